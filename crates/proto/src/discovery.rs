//! LAN discovery, without the network: what a relay announces over mDNS / DNS-SD (the TXT
//! record of a `_signalbox._udp.local.` service) and the trust-on-first-use rules a client
//! applies to what it finds.
//!
//! The TXT keys, each a `key=value` string of at most 255 bytes:
//!
//! | key | value |
//! |---|---|
//! | `name` | the relay's name, as people know it (UTF-8) |
//! | `fp` | the SHA-256 fingerprint of its certificate, 64 lowercase hex digits |
//! | `proto` | the protocol version it speaks ([`PROTOCOL_VERSION`]) |
//! | `mode` | `open` (anyone may join) or `token` (a join token is needed) |
//! | `sessions` | the sessions its host chose to publish, comma-separated (may be absent) |
//!
//! The relay's UDP port and addresses are the service's SRV and A/AAAA records, as DNS-SD has
//! them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::fingerprint::Fingerprint;
use crate::ids::SessionId;
use crate::messages::PROTOCOL_VERSION;

/// The DNS-SD service type relays announce.
pub const SERVICE_TYPE: &str = "_signalbox._udp.local.";
/// The longest TXT string (`key=value`) DNS allows.
const MAX_TXT_STRING: usize = 255;

/// What a relay tells the LAN about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// The relay's name.
    pub name: String,
    /// Its certificate's fingerprint.
    pub fingerprint: Fingerprint,
    /// The protocol version it speaks.
    pub protocol: u16,
    /// Whether it accepts joins without a token.
    pub open: bool,
    /// Sessions it invites to (those its host published).
    pub sessions: Vec<SessionId>,
}

/// Why a TXT record is not a relay's announcement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAnnouncement {
    /// A required key is absent.
    #[error("the announcement has no `{0}`")]
    Missing(&'static str),
    /// A value does not parse.
    #[error("the announcement's `{key}` is not valid: {value:?}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
    },
}

impl Announcement {
    /// A relay's announcement in this protocol version.
    pub fn new(name: impl Into<String>, fingerprint: Fingerprint, open: bool) -> Self {
        Self {
            name: name.into(),
            fingerprint,
            protocol: PROTOCOL_VERSION,
            open,
            sessions: Vec::new(),
        }
    }

    /// The TXT strings, as `(key, value)` pairs. A name too long for one TXT string is cut at a
    /// character boundary; sessions that do not fit are left out (the first ones are kept).
    pub fn to_txt(&self) -> Vec<(String, String)> {
        let fits = |key: &str, value: &str| key.len() + 1 + value.len() <= MAX_TXT_STRING;
        let mut name = self.name.clone();
        while !fits("name", &name) {
            name.pop();
        }
        let mut txt = vec![
            ("name".to_owned(), name),
            ("fp".to_owned(), self.fingerprint.to_string()),
            ("proto".to_owned(), self.protocol.to_string()),
            (
                "mode".to_owned(),
                if self.open { "open" } else { "token" }.to_owned(),
            ),
        ];
        let mut sessions = String::new();
        for s in &self.sessions {
            let next = if sessions.is_empty() {
                s.as_str().to_owned()
            } else {
                format!("{sessions},{s}")
            };
            if !fits("sessions", &next) {
                break;
            }
            sessions = next;
        }
        if !sessions.is_empty() {
            txt.push(("sessions".to_owned(), sessions));
        }
        txt
    }

    /// Reads an announcement from TXT strings (unknown keys are ignored, so later versions can
    /// add some).
    pub fn from_txt<'a>(
        txt: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, InvalidAnnouncement> {
        let txt: BTreeMap<&str, &str> = txt.into_iter().collect();
        let get = |key: &'static str| {
            txt.get(key)
                .copied()
                .ok_or(InvalidAnnouncement::Missing(key))
        };
        let invalid = |key: &'static str, value: &str| InvalidAnnouncement::Invalid {
            key,
            value: value.to_owned(),
        };
        let name = get("name")?.to_owned();
        let fp = get("fp")?;
        let fingerprint = fp.parse().map_err(|_| invalid("fp", fp))?;
        let proto = get("proto")?;
        let protocol = proto.parse().map_err(|_| invalid("proto", proto))?;
        let open = match get("mode")? {
            "open" => true,
            "token" => false,
            other => return Err(invalid("mode", other)),
        };
        let sessions = match txt.get("sessions") {
            None | Some(&"") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(SessionId::new)
                .collect::<Result<_, _>>()
                .map_err(|_| invalid("sessions", list))?,
        };
        Ok(Self {
            name,
            fingerprint,
            protocol,
            open,
            sessions,
        })
    }

    /// Whether a client of this version can join it.
    pub fn compatible(&self) -> bool {
        self.protocol == PROTOCOL_VERSION
    }
}

/// What trust on first use says about a relay found on the LAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Never seen under this name: its fingerprint is shown, and remembered once the user
    /// joins it.
    New,
    /// Seen before under this name, with this fingerprint.
    Known,
    /// Seen before under this name with *another* fingerprint: another machine, a reinstalled
    /// relay, or someone impersonating it. Never joined without the user confirming.
    Changed {
        /// The fingerprint remembered for the name.
        remembered: Fingerprint,
    },
}

/// Relay names and the fingerprints first seen for them, as SSH's `known_hosts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownRelays {
    relays: BTreeMap<String, Fingerprint>,
}

impl KnownRelays {
    /// What the remembered fingerprints say about `name` showing up with `fingerprint`.
    pub fn check(&self, name: &str, fingerprint: &Fingerprint) -> Trust {
        match self.relays.get(name) {
            None => Trust::New,
            Some(known) if known == fingerprint => Trust::Known,
            Some(known) => Trust::Changed { remembered: *known },
        }
    }

    /// Remembers `fingerprint` for a new name. A name already known keeps its fingerprint:
    /// replacing it takes [`KnownRelays::replace`], which the user must ask for. Returns
    /// whether the name is now trusted with this fingerprint.
    pub fn remember(&mut self, name: &str, fingerprint: Fingerprint) -> bool {
        *self.relays.entry(name.to_owned()).or_insert(fingerprint) == fingerprint
    }

    /// Trusts `fingerprint` for `name` from now on (the user confirmed a changed relay).
    pub fn replace(&mut self, name: &str, fingerprint: Fingerprint) {
        self.relays.insert(name.to_owned(), fingerprint);
    }

    /// Forgets `name`.
    pub fn forget(&mut self, name: &str) {
        self.relays.remove(name);
    }

    /// How many names are remembered.
    pub fn len(&self) -> usize {
        self.relays.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.relays.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(byte: u8) -> Fingerprint {
        Fingerprint([byte; 32])
    }

    fn pairs(txt: &[(String, String)]) -> Vec<(&str, &str)> {
        txt.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn txt_round_trips() {
        let mut a = Announcement::new("Lab relay ✓", fp(7), true);
        a.sessions = vec![
            SessionId::new("lobby").unwrap(),
            SessionId::new("robots").unwrap(),
        ];
        let txt = a.to_txt();
        assert_eq!(
            pairs(&txt),
            vec![
                ("name", "Lab relay ✓"),
                (
                    "fp",
                    "0707070707070707070707070707070707070707070707070707070707070707"
                ),
                ("proto", "1"),
                ("mode", "open"),
                ("sessions", "lobby,robots"),
            ]
        );
        assert_eq!(Announcement::from_txt(pairs(&txt)).unwrap(), a);
        let token = Announcement::new("b", fp(1), false);
        let txt = token.to_txt();
        assert!(!txt.iter().any(|(k, _)| k == "sessions"));
        assert_eq!(Announcement::from_txt(pairs(&txt)).unwrap(), token);
        assert!(token.compatible());
    }

    #[test]
    fn every_txt_string_fits_dns() {
        let mut a = Announcement::new("é".repeat(300), fp(2), false);
        a.sessions = (0..100)
            .map(|i| SessionId::new(format!("session-{i}")).unwrap())
            .collect();
        let txt = a.to_txt();
        for (k, v) in &txt {
            assert!(k.len() + 1 + v.len() <= 255, "{k}");
        }
        let back = Announcement::from_txt(pairs(&txt)).unwrap();
        assert!(back.name.chars().all(|c| c == 'é') && !back.name.is_empty());
        assert!(!back.sessions.is_empty() && back.sessions.len() < 100);
        assert_eq!(back.sessions[..], a.sessions[..back.sessions.len()]);
    }

    #[test]
    fn bad_txt_is_refused_and_unknown_keys_ignored() {
        let good = Announcement::new("r", fp(3), true).to_txt();
        let with = |key: &str, value: &str| {
            let mut t: Vec<(String, String)> =
                good.iter().filter(|(k, _)| k != key).cloned().collect();
            t.push((key.to_owned(), value.to_owned()));
            t
        };
        let without = |key: &str| -> Vec<(String, String)> {
            good.iter().filter(|(k, _)| k != key).cloned().collect()
        };
        for key in ["name", "fp", "proto", "mode"] {
            assert_eq!(
                Announcement::from_txt(pairs(&without(key))),
                Err(InvalidAnnouncement::Missing(match key {
                    "name" => "name",
                    "fp" => "fp",
                    "proto" => "proto",
                    _ => "mode",
                }))
            );
        }
        for (key, value) in [
            ("fp", "abcd"),
            ("proto", "one"),
            ("mode", "closed"),
            ("sessions", "a,b c"),
        ] {
            assert!(
                matches!(
                    Announcement::from_txt(pairs(&with(key, value))),
                    Err(InvalidAnnouncement::Invalid { .. })
                ),
                "{key}={value}"
            );
        }
        assert!(Announcement::from_txt(pairs(&with("future", "x"))).is_ok());
        let mut newer = Announcement::from_txt(pairs(&with("proto", "2"))).unwrap();
        assert!(!newer.compatible());
        newer.protocol = PROTOCOL_VERSION;
        assert!(newer.compatible());
    }

    #[test]
    fn trust_on_first_use() {
        let mut known = KnownRelays::default();
        assert_eq!(known.check("lab", &fp(1)), Trust::New);
        assert!(known.remember("lab", fp(1)));
        assert_eq!(known.check("lab", &fp(1)), Trust::Known);
        // Another fingerprint under a known name: loudly changed, and remembering it does not
        // quietly replace the first one.
        assert_eq!(
            known.check("lab", &fp(2)),
            Trust::Changed { remembered: fp(1) }
        );
        assert!(!known.remember("lab", fp(2)));
        assert_eq!(known.check("lab", &fp(1)), Trust::Known);
        // Names are separate.
        assert_eq!(known.check("office", &fp(1)), Trust::New);
        // Only an explicit replace changes it.
        known.replace("lab", fp(2));
        assert_eq!(known.check("lab", &fp(2)), Trust::Known);
        assert_eq!(
            known.check("lab", &fp(1)),
            Trust::Changed { remembered: fp(2) }
        );
        // It survives being saved.
        let saved = serde_json::to_string(&known).unwrap();
        let loaded: KnownRelays = serde_json::from_str(&saved).unwrap();
        assert_eq!(loaded, known);
        known.forget("lab");
        assert!(known.is_empty());
        assert_eq!(known.check("lab", &fp(2)), Trust::New);
    }
}
