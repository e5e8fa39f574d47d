//! Token claims: what a relay's JWT says about the connection that presents it.
//!
//! Tokens are signed (HS256) by the relay with a secret in its data directory; this module
//! only defines their contents and the rules on them, so that every part agrees.

use serde::{Deserialize, Serialize};

use crate::messages::Role;

/// The `sid` of a token that is good for every session (`server` role only).
pub const ANY_SESSION: &str = "*";
/// The longest connection data, in characters (Vonage's rule).
pub const MAX_CONNECTION_DATA_CHARS: usize = 1000;
/// The longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// The claims of a Signalbox token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The session it admits to ([`ANY_SESSION`] for servers).
    pub sid: String,
    /// The role it grants.
    #[serde(default)]
    pub role: Role,
    /// A display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Connection data, visible to everyone in the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// A unique id for this token.
    pub jti: String,
}

/// A display name or connection data that breaks the rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidIdentity {
    /// The name is too long.
    #[error("name is {len} characters; the limit is {MAX_NAME_CHARS}")]
    NameTooLong {
        /// Its length in characters.
        len: usize,
    },
    /// The name has a control character.
    #[error("name may not contain control characters")]
    NameControl,
    /// The connection data is too long.
    #[error("connection data is {len} characters; the limit is {MAX_CONNECTION_DATA_CHARS}")]
    DataTooLong {
        /// Its length in characters.
        len: usize,
    },
}

/// Checks a display name: at most 64 characters, no control characters.
pub fn validate_name(name: &str) -> Result<(), InvalidIdentity> {
    let len = name.chars().count();
    if len > MAX_NAME_CHARS {
        return Err(InvalidIdentity::NameTooLong { len });
    }
    if name.chars().any(char::is_control) {
        return Err(InvalidIdentity::NameControl);
    }
    Ok(())
}

/// Checks connection data: at most 1000 characters.
pub fn validate_connection_data(data: &str) -> Result<(), InvalidIdentity> {
    let len = data.chars().count();
    if len > MAX_CONNECTION_DATA_CHARS {
        return Err(InvalidIdentity::DataTooLong { len });
    }
    Ok(())
}

impl Claims {
    /// Whether the token admits to `session`.
    pub fn admits(&self, session: &str) -> bool {
        self.sid == session || (self.sid == ANY_SESSION && self.role == Role::Server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_rules() {
        assert!(validate_name("Alice").is_ok());
        assert!(validate_name(&"a".repeat(64)).is_ok());
        assert_eq!(
            validate_name(&"a".repeat(65)),
            Err(InvalidIdentity::NameTooLong { len: 65 })
        );
        assert_eq!(validate_name("a\nb"), Err(InvalidIdentity::NameControl));
        assert!(validate_connection_data(&"é".repeat(1000)).is_ok());
        assert!(validate_connection_data(&"é".repeat(1001)).is_err());
    }

    #[test]
    fn admits() {
        let mut c = Claims {
            sid: "lobby".into(),
            role: Role::Publisher,
            name: None,
            data: None,
            exp: 0,
            iat: 0,
            jti: "j".into(),
        };
        assert!(c.admits("lobby"));
        assert!(!c.admits("other"));
        c.sid = ANY_SESSION.into();
        assert!(
            !c.admits("lobby"),
            "only servers may hold any-session tokens"
        );
        c.role = Role::Server;
        assert!(c.admits("lobby"));
    }

    #[test]
    fn json_shape() {
        let json = r#"{"sid":"s","role":"moderator","exp":10,"iat":1,"jti":"x"}"#;
        let c: Claims = serde_json::from_str(json).unwrap();
        assert_eq!(c.role, Role::Moderator);
        assert_eq!(c.name, None);
    }
}
