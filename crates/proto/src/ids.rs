//! Identifiers: who a connection is, and which session it is in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

/// The id the relay gives a connection when it joins: a random (v4) UUID.
///
/// Nobody can choose or forge it: the relay makes it, and stamps it on every signal the
/// connection sends. On the wire it is 16 bytes; in JSON, the hyphenated text form.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionId(Uuid);

impl std::hash::Hash for ConnectionId {
    /// Ids are random, so half of one is as good a hash input as all of it — and the relay
    /// looks ids up for every delivery.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let b = self.0.as_bytes();
        state.write_u64(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]));
    }
}

impl ConnectionId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The id from its 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }

    /// The 16 bytes of the id.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The first eight hex digits, for compact display.
    pub fn short(&self) -> String {
        let mut s = self.0.simple().to_string();
        s.truncate(8);
        s
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({})", self.0.hyphenated())
    }
}

/// A connection id that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not a connection id (expected a UUID such as 67e55044-10b1-426f-9247-bb680e5fe0c8)"
)]
pub struct InvalidConnectionId(pub String);

impl FromStr for ConnectionId {
    type Err = InvalidConnectionId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| InvalidConnectionId(s.to_owned()))
    }
}

/// The longest session id, in bytes.
pub const MAX_SESSION_ID_LEN: usize = 128;

/// The name of a session: 1–128 characters of `A-Z a-z 0-9 _ . ~ -`, other than `.` and `..`.
///
/// Long enough for Vonage-shaped session ids; the character set is safe in URLs, file names
/// and NATS subjects without escaping.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SessionId(String);

/// Why a session id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSessionId {
    /// The id is empty.
    #[error("session id is empty")]
    Empty,
    /// The id is longer than the limit.
    #[error("session id is {len} bytes; the limit is {MAX_SESSION_ID_LEN}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The id is `.` or `..`, which URLs and file systems treat as path steps.
    #[error("session id may not be '.' or '..'")]
    Dots,
    /// The id has a character outside the allowed set.
    #[error("session id may only contain A-Z a-z 0-9 _ . ~ - (found {found:?} at byte {position})")]
    BadCharacter {
        /// The first character that is not allowed.
        found: char,
        /// Its byte offset.
        position: usize,
    },
}

impl SessionId {
    /// Checks `id` against the rule and wraps it.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidSessionId> {
        let id = id.into();
        if id.is_empty() {
            return Err(InvalidSessionId::Empty);
        }
        if id.len() > MAX_SESSION_ID_LEN {
            return Err(InvalidSessionId::TooLong { len: id.len() });
        }
        if id == "." || id == ".." {
            return Err(InvalidSessionId::Dots);
        }
        if let Some((position, found)) = id
            .char_indices()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '~' | '-')))
        {
            return Err(InvalidSessionId::BadCharacter { found, position });
        }
        Ok(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({:?})", self.0)
    }
}

impl FromStr for SessionId {
    type Err = InvalidSessionId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_rules() {
        assert!(SessionId::new("lobby").is_ok());
        assert!(SessionId::new("a.b_c~d-E9").is_ok());
        assert_eq!(SessionId::new(""), Err(InvalidSessionId::Empty));
        assert!(SessionId::new("x".repeat(128)).is_ok());
        assert_eq!(
            SessionId::new("x".repeat(129)),
            Err(InvalidSessionId::TooLong { len: 129 })
        );
        assert_eq!(
            SessionId::new("ab/c"),
            Err(InvalidSessionId::BadCharacter {
                found: '/',
                position: 2
            })
        );
        assert!(SessionId::new("é").is_err());
        assert!(SessionId::new("a b").is_err());
        assert_eq!(SessionId::new(".."), Err(InvalidSessionId::Dots));
        assert_eq!(SessionId::new("."), Err(InvalidSessionId::Dots));
        assert!(SessionId::new("...").is_ok());
    }

    #[test]
    fn session_id_deserialize_validates() {
        assert!(serde_json::from_str::<SessionId>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<SessionId>("\"no way\"").is_err());
    }

    #[test]
    fn connection_id_text_round_trip() {
        let id = ConnectionId::random();
        assert_eq!(id.to_string().parse::<ConnectionId>().unwrap(), id);
        assert_eq!(id.short().len(), 8);
        assert!("nope".parse::<ConnectionId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
    }
}
