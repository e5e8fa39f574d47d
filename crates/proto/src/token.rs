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
    /// The relay it is for: the SHA-256 fingerprint (64 hex digits) of the certificate the
    /// relay presents. A relay refuses a token made for another; a client does not present
    /// it to a relay whose certificate has another fingerprint (a look-alike relay on the
    /// LAN never sees it). Absent: any relay that checks the signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
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
    /// The name has a control character or another invisible one.
    #[error("name may not contain control, bidirectional or other invisible characters")]
    NameControl,
    /// The connection data is too long.
    #[error("connection data is {len} characters; the limit is {MAX_CONNECTION_DATA_CHARS}")]
    DataTooLong {
        /// Its length in characters.
        len: usize,
    },
}

/// Whether `c` draws nothing or reorders what is drawn: controls, bidirectional embeddings,
/// overrides, isolates and marks, zero-width characters, the soft hyphen and the byte-order
/// mark. A name with one can look like another, or like none.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{034f}'
                | '\u{061c}'
                | '\u{115f}'
                | '\u{1160}'
                | '\u{17b4}'
                | '\u{17b5}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff0}'..='\u{fff8}'
        )
}

/// Checks a display name: at most 64 characters, none of them invisible (controls,
/// bidirectional controls, zero-width characters: see [`is_invisible`]), and not blank.
pub fn validate_name(name: &str) -> Result<(), InvalidIdentity> {
    let len = name.chars().count();
    if len > MAX_NAME_CHARS {
        return Err(InvalidIdentity::NameTooLong { len });
    }
    if name.chars().any(is_invisible) {
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
    /// The claims of `token` as it says, without checking its signature (a client reads the
    /// audience of the token it was given). `None` for anything but a Signalbox JWT.
    pub fn peek(token: &str) -> Option<Claims> {
        use base64::Engine as _;
        let payload = token.split('.').nth(1)?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?;
        serde_json::from_slice(&json).ok()
    }

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
        // Right-to-left override, zero-width space, a BOM: refused; accents and emoji are not.
        for hostile in [
            "ad\u{202e}nim",
            "bob\u{200b}",
            "\u{feff}relay",
            "a\u{2066}b",
        ] {
            assert_eq!(
                validate_name(hostile),
                Err(InvalidIdentity::NameControl),
                "{hostile:?}"
            );
        }
        assert!(validate_name("Zoë 🚀").is_ok());
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
            aud: None,
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
