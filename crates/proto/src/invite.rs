//! Invites: one string that carries everything needed to join a session.
//!
//! `signalbox://HOST:PORT/SESSION?fp=<64 hex>&token=<jwt>` — `fp` pins the relay's
//! certificate, `token` authorises the join; both are optional.

use std::fmt;
use std::str::FromStr;

use url::Url;

use crate::fingerprint::{Fingerprint, InvalidFingerprint};
use crate::ids::{InvalidSessionId, SessionId};

/// The URL scheme of invites.
pub const SCHEME: &str = "signalbox";
/// The relay's QUIC port when an invite names none.
pub const DEFAULT_PORT: u16 = 4433;

/// A parsed invite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// The relay's host name or IP address (IPv6 without brackets).
    pub host: String,
    /// The relay's UDP port.
    pub port: u16,
    /// The session to join.
    pub session: SessionId,
    /// The relay's certificate fingerprint, when pinned.
    pub fingerprint: Option<Fingerprint>,
    /// The join token, when the relay needs one.
    pub token: Option<String>,
}

/// Why an invite did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInvite {
    /// Not a URL at all.
    #[error("not an invite URL: {0}")]
    Url(String),
    /// A URL of another scheme.
    #[error("an invite starts with signalbox:// (got {0}://)")]
    Scheme(String),
    /// No host.
    #[error("the invite names no relay host")]
    NoHost,
    /// No session in the path.
    #[error("the invite names no session (signalbox://HOST:PORT/SESSION)")]
    NoSession,
    /// The session id breaks the rule.
    #[error("bad session in invite: {0}")]
    Session(#[from] InvalidSessionId),
    /// The `fp` parameter is not a fingerprint.
    #[error("bad fingerprint in invite: {0}")]
    Fingerprint(#[from] InvalidFingerprint),
}

impl Invite {
    /// `host:port` for connecting (IPv6 hosts in brackets).
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Invite {
    type Err = InvalidInvite;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let url = Url::parse(s.trim()).map_err(|e| InvalidInvite::Url(e.to_string()))?;
        if url.scheme() != SCHEME {
            return Err(InvalidInvite::Scheme(url.scheme().to_owned()));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(InvalidInvite::NoHost),
        };
        let port = url.port().unwrap_or(DEFAULT_PORT);
        let path = url.path().trim_matches('/');
        if path.is_empty() {
            return Err(InvalidInvite::NoSession);
        }
        let session = SessionId::new(path)?;
        let mut fingerprint = None;
        let mut token = None;
        for (key, value) in url.query_pairs() {
            match &*key {
                "fp" => fingerprint = Some(value.parse()?),
                "token" if !value.is_empty() => token = Some(value.into_owned()),
                _ => {}
            }
        }
        Ok(Self {
            host,
            port,
            session,
            fingerprint,
            token,
        })
    }
}

impl fmt::Display for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}://{}/{}", self.address(), self.session)?;
        let mut sep = '?';
        if let Some(fp) = &self.fingerprint {
            write!(f, "{sep}fp={fp}")?;
            sep = '&';
        }
        if let Some(token) = &self.token {
            // JWTs are base64url and dots: nothing to escape; encode anyway for other tokens.
            let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
            write!(f, "{sep}token={encoded}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp() -> Fingerprint {
        Fingerprint::of_der(b"x")
    }

    #[test]
    fn full_invite_round_trip() {
        let invite = Invite {
            host: "192.168.1.20".into(),
            port: 4433,
            session: SessionId::new("lobby").unwrap(),
            fingerprint: Some(fp()),
            token: Some("aaa.bbb.ccc".into()),
        };
        let text = invite.to_string();
        assert_eq!(
            text,
            format!(
                "signalbox://192.168.1.20:4433/lobby?fp={}&token=aaa.bbb.ccc",
                fp()
            )
        );
        assert_eq!(text.parse::<Invite>().unwrap(), invite);
    }

    #[test]
    fn minimal_and_ipv6() {
        let i: Invite = "signalbox://relay.example/team-1".parse().unwrap();
        assert_eq!(i.port, DEFAULT_PORT);
        assert_eq!(i.host, "relay.example");
        assert_eq!(i.fingerprint, None);
        assert_eq!(i.token, None);
        let v6: Invite = "signalbox://[::1]:5000/s".parse().unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.address(), "[::1]:5000");
        assert_eq!(v6.to_string().parse::<Invite>().unwrap(), v6);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(matches!(
            "https://x/s".parse::<Invite>(),
            Err(InvalidInvite::Scheme(_))
        ));
        assert!(matches!(
            "signalbox://host:1/".parse::<Invite>(),
            Err(InvalidInvite::NoSession)
        ));
        assert!(matches!(
            "signalbox://host:1/a?fp=12".parse::<Invite>(),
            Err(InvalidInvite::Fingerprint(_))
        ));
        assert!(matches!(
            "signalbox://host:1/a%20b".parse::<Invite>(),
            Err(InvalidInvite::Session(_))
        ));
        assert!(matches!(
            "nonsense".parse::<Invite>(),
            Err(InvalidInvite::Url(_))
        ));
    }
}
