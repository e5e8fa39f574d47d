//! What `connect` needs: where the relay is, which session, and who we are.

use std::str::FromStr;
use std::time::Duration;

use signalbox_proto::invite::{DEFAULT_PORT, InvalidInvite};
use signalbox_proto::{Fingerprint, Invite, SessionId};

/// How to join a session.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The relay's host name or IP address.
    pub host: String,
    /// The relay's UDP port.
    pub port: u16,
    /// The session to join.
    pub session: SessionId,
    /// A join token, when the relay needs one.
    pub token: Option<String>,
    /// A display name (a token's name wins).
    pub name: Option<String>,
    /// The relay's certificate fingerprint; without it, the platform's roots decide.
    pub fingerprint: Option<Fingerprint>,
    /// How long to wait for the relay before giving up.
    pub connect_timeout: Duration,
    /// A QUIC handshake not done in this long (at least 100 ms) is dropped and dialed anew
    /// while `connect_timeout` lasts. Its packets were lost — a busy network, a join storm —
    /// and QUIC's retransmissions back off to seconds apart, while a relay gives up on a
    /// handshake after 10 s itself. Only the handshake: once it is done, no member can be
    /// left behind by a new dial.
    pub handshake_attempt: Duration,
    /// Whether signals to everyone reach this client (true). Turn it off for a client that
    /// only sends; signals addressed to it, and presence, still arrive.
    pub receive_broadcasts: bool,
    /// Reconnect by itself when the network fails or the relay restarts (true).
    pub reconnect: bool,
    /// Give up reconnecting after this long (then `Disconnected { networkDisconnected }`).
    pub reconnect_timeout: Duration,
    /// Keep signals sent while reconnecting and send them once back (true, as in Vonage's
    /// `retryAfterReconnect`); when off, sending while reconnecting fails at once.
    pub retry_after_reconnect: bool,
    /// The most signals not yet accepted by the relay (sent, or waiting for a reconnect).
    /// At the limit, `send` waits while connected (back-pressure) and fails with
    /// `QueueFull` while reconnecting.
    pub max_unaccepted: usize,
    /// A connection silent for this long is lost.
    pub idle_timeout: Duration,
    /// Interval of QUIC keep-alive packets.
    pub keep_alive: Duration,
}

impl ConnectOptions {
    /// Options for `session` on the relay at `host:port`.
    pub fn new(host: impl Into<String>, port: u16, session: SessionId) -> Self {
        Self {
            host: host.into(),
            port,
            session,
            token: None,
            name: None,
            fingerprint: None,
            connect_timeout: Duration::from_secs(10),
            handshake_attempt: Duration::from_secs(10),
            receive_broadcasts: true,
            reconnect: true,
            reconnect_timeout: Duration::from_secs(60),
            retry_after_reconnect: true,
            max_unaccepted: 10_000,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(5),
        }
    }

    /// Options from a parsed invite.
    pub fn from_invite(invite: &Invite) -> Self {
        Self {
            token: invite.token.clone(),
            fingerprint: invite.fingerprint,
            ..Self::new(invite.host.clone(), invite.port, invite.session.clone())
        }
    }

    /// Sets the display name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets whether signals to everyone reach this client.
    pub fn with_receive_broadcasts(mut self, receive: bool) -> Self {
        self.receive_broadcasts = receive;
        self
    }

    /// Pins the relay's certificate.
    pub fn with_fingerprint(mut self, fingerprint: Fingerprint) -> Self {
        self.fingerprint = Some(fingerprint);
        self
    }

    /// `host:port`, IPv6 hosts in brackets.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// These options as an invite.
    pub fn to_invite(&self) -> Invite {
        Invite {
            host: self.host.clone(),
            port: self.port,
            session: self.session.clone(),
            fingerprint: self.fingerprint,
            token: self.token.clone(),
        }
    }

    /// Splits `host[:port]` (IPv6 in brackets) into host and port.
    pub fn split_address(address: &str) -> Option<(String, u16)> {
        let address = address.trim();
        if let Some(rest) = address.strip_prefix('[') {
            let (host, after) = rest.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().ok()?,
                None if after.is_empty() => DEFAULT_PORT,
                None => return None,
            };
            return Some((host.to_owned(), port));
        }
        match address.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => {
                Some((host.to_owned(), port.parse().ok()?))
            }
            Some(_) => Some((address.to_owned(), DEFAULT_PORT)),
            None if !address.is_empty() => Some((address.to_owned(), DEFAULT_PORT)),
            None => None,
        }
    }
}

impl FromStr for ConnectOptions {
    type Err = InvalidInvite;
    /// Parses an invite URL.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::from_invite(&s.parse()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            ConnectOptions::split_address("10.0.0.1:5000"),
            Some(("10.0.0.1".into(), 5000))
        );
        assert_eq!(
            ConnectOptions::split_address("relay.lan"),
            Some(("relay.lan".into(), DEFAULT_PORT))
        );
        assert_eq!(
            ConnectOptions::split_address("[::1]:7"),
            Some(("::1".into(), 7))
        );
        assert_eq!(ConnectOptions::split_address("host:notaport"), None);
        assert_eq!(ConnectOptions::split_address(""), None);
    }

    #[test]
    fn invite_round_trip() {
        let o: ConnectOptions = "signalbox://127.0.0.1:9/s?token=t".parse().unwrap();
        assert_eq!(o.address(), "127.0.0.1:9");
        assert_eq!(o.token.as_deref(), Some("t"));
        assert_eq!(
            o.to_invite().to_string(),
            "signalbox://127.0.0.1:9/s?token=t"
        );
    }
}
