//! Join tokens: JWTs (HS256) signed with a secret kept in the relay's data directory.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use signalbox_proto::token::{self, Claims};
use signalbox_proto::{ConnectionId, RefuseCode, Refused, Role};

use crate::files::{self, FileError};

const SECRET_FILE: &str = "token-secret";
/// How long a token lives unless told otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest a token may live (Vonage's 30 days).
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Signs and checks tokens with the relay's secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The audience of the tokens these keys make and accept: the fingerprint of the
    /// certificate the relay presents, or its cluster's id (`None`: tokens without one, and
    /// any is accepted).
    audience: Option<String>,
}

/// The file in the data directory where a running relay records the fingerprint of the
/// certificate it presents (public: it is in every invite), so that tokens made by the
/// command line on that machine carry it as their audience.
const FINGERPRINT_FILE: &str = "fingerprint";
/// Beside it, the audience of the relay's tokens (its fingerprint, or its cluster's id).
const AUDIENCE_FILE: &str = "audience";

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

/// What to put in a new token.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// The session (or [`token::ANY_SESSION`] for a server token).
    pub session: String,
    /// The role.
    pub role: Role,
    /// A display name.
    pub name: Option<String>,
    /// Connection data (≤ 1000 characters).
    pub data: Option<String>,
    /// Lifetime; [`DEFAULT_TTL`] when `None`.
    pub ttl: Option<Duration>,
}

/// A token that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The lifetime is past the limit.
    #[error("a token may live at most 30 days (asked for {})", humantime::format_duration(*.0))]
    TtlTooLong(Duration),
    /// The session id breaks the rules.
    #[error(transparent)]
    Session(#[from] signalbox_proto::ids::InvalidSessionId),
    /// The name or data breaks the rules.
    #[error(transparent)]
    Identity(#[from] token::InvalidIdentity),
    /// Signing failed.
    #[error("cannot sign token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenKeys {
    /// Keys from a secret, for tokens without an audience.
    pub fn from_secret(secret: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            audience: None,
        }
    }

    /// The same keys for the relay whose certificate has this fingerprint: tokens they make
    /// carry it as `aud`, and tokens with another `aud` are refused.
    pub fn for_relay(self, fingerprint: &signalbox_proto::Fingerprint) -> Self {
        self.for_audience(fingerprint.to_string())
    }

    /// The same keys for an audience: a relay's fingerprint, or a cluster's id (see
    /// `cluster_audience`).
    pub fn for_audience(mut self, audience: String) -> Self {
        self.audience = Some(audience);
        self
    }

    /// The audience of the tokens these keys make.
    pub fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    /// Loads the secret from `data_dir`, making a random one on first use; the audience is
    /// the fingerprint the relay of that directory last presented (none before it first
    /// started).
    pub fn load_or_create(data_dir: &Path) -> Result<Self, FileError> {
        let keys = Self::from_secret(&secret(data_dir)?);
        let recorded = std::fs::read_to_string(data_dir.join(AUDIENCE_FILE))
            .ok()
            .map(|text| text.trim().to_owned())
            .filter(|a| !a.is_empty());
        Ok(match recorded {
            Some(audience) => keys.for_audience(audience),
            None => keys,
        })
    }
}

/// The fingerprint the relay of `data_dir` last presented, if it ever ran.
pub fn recorded_fingerprint(data_dir: &Path) -> Option<signalbox_proto::Fingerprint> {
    std::fs::read_to_string(data_dir.join(FINGERPRINT_FILE))
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

/// The audience of a cluster's tokens: `cluster:` and 16 hex digits derived from the token
/// secret its nodes share, so a token made by one node is good on all of them (and on no
/// other cluster or relay).
pub(crate) fn cluster_audience(secret: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, b"signalbox cluster audience");
    format!("cluster:{}", hex::encode(&tag.as_ref()[..8]))
}

/// Records the fingerprint the relay presents and its tokens' audience, for
/// [`TokenKeys::load_or_create`] and `signalbox invite`.
pub(crate) fn record_identity(
    data_dir: &Path,
    fingerprint: &signalbox_proto::Fingerprint,
    audience: &str,
) -> Result<(), FileError> {
    files::write_public(
        &data_dir.join(FINGERPRINT_FILE),
        format!("{fingerprint}\n").as_bytes(),
    )?;
    files::write_public(
        &data_dir.join(AUDIENCE_FILE),
        format!("{audience}\n").as_bytes(),
    )
}

/// The relay's secret (made on first use), from which its token keys and its QUIC
/// stateless-reset key derive: both survive a restart with the same data directory.
pub(crate) fn secret(data_dir: &Path) -> Result<Vec<u8>, FileError> {
    {
        let path = data_dir.join(SECRET_FILE);
        if !path.exists() {
            let mut secret = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret).map_err(
                |_| FileError {
                    path: path.clone(),
                    source: std::io::Error::other("no system randomness"),
                },
            )?;
            files::write_private(&path, hex::encode(secret).as_bytes())?;
        }
        let text = files::read(&path)?;
        let text = String::from_utf8_lossy(&text);
        let secret = text.trim().as_bytes().to_vec();
        if secret.len() < crate::config::MIN_SECRET_BYTES {
            return Err(FileError {
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "the token secret is {} bytes; at least {} are needed (remove the file \
                         and a new random one is made — tokens signed with the old one stop working)",
                        secret.len(),
                        crate::config::MIN_SECRET_BYTES
                    ),
                ),
            });
        }
        Ok(secret)
    }
}

impl TokenKeys {
    /// Makes a signed token.
    pub fn mint(&self, req: &TokenRequest) -> Result<String, MintError> {
        if req.session != token::ANY_SESSION {
            signalbox_proto::SessionId::new(req.session.clone())?;
        }
        if let Some(name) = &req.name {
            token::validate_name(name)?;
        }
        if let Some(data) = &req.data {
            token::validate_connection_data(data)?;
        }
        let ttl = req.ttl.unwrap_or(DEFAULT_TTL);
        if ttl > MAX_TTL {
            return Err(MintError::TtlTooLong(ttl));
        }
        let iat = now_secs();
        self.sign(&Claims {
            sid: req.session.clone(),
            role: req.role,
            name: req.name.clone(),
            data: req.data.clone(),
            exp: iat + ttl.as_secs().max(1),
            iat,
            jti: ConnectionId::random().to_string(),
            aud: self.audience.clone(),
        })
    }

    /// Signs claims as they are, unchecked (for tools and tests that need unusual tokens,
    /// such as expired ones).
    pub fn sign(&self, claims: &Claims) -> Result<String, MintError> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.encoding,
        )?)
    }

    /// Checks a token's signature and expiry, and that it admits to `session`.
    pub fn verify(&self, token: &str, session: &str) -> Result<Claims, Refused> {
        let claims = self.verify_any(token)?;
        if !claims.admits(session) {
            return Err(Refused {
                code: RefuseCode::WrongSession,
                message: format!("the token is for session '{}', not '{session}'", claims.sid),
            });
        }
        Ok(claims)
    }

    /// Checks a token's signature and expiry, for any session.
    pub fn verify_any(&self, token: &str) -> Result<Claims, Refused> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        // The audience is checked below, against this relay's certificate.
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => Refused {
                    code: RefuseCode::TokenExpired,
                    message: "the token has expired; ask for a new invite".into(),
                },
                ErrorKind::InvalidSignature => Refused {
                    code: RefuseCode::InvalidToken,
                    message: "the token's signature does not match this relay (made by another relay, or altered)".into(),
                },
                other => Refused {
                    code: RefuseCode::InvalidToken,
                    message: plain_reason(other).into(),
                },
            },
        )?;
        if let (Some(aud), Some(ours)) = (&data.claims.aud, &self.audience)
            && aud != ours
        {
            return Err(Refused {
                code: RefuseCode::InvalidToken,
                message:
                    "the token was made for another relay (its audience is another certificate)"
                        .into(),
            });
        }
        Ok(data.claims)
    }
}

/// Why a token was not accepted, in words for people (never the JWT library's own text).
fn plain_reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => "the token is malformed (not a token this relay makes)",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "the token is signed with an algorithm this relay does not accept"
        }
        ErrorKind::MissingRequiredClaim(_) => "the token lacks a claim this relay needs",
        ErrorKind::ImmatureSignature => "the token is not valid yet",
        _ => "the token is not valid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(session: &str) -> TokenRequest {
        TokenRequest {
            session: session.into(),
            role: Role::Moderator,
            name: Some("Ann".into()),
            data: Some("{\"seat\":3}".into()),
            ttl: None,
        }
    }

    #[test]
    fn mint_and_verify() {
        let keys = TokenKeys::from_secret(b"secret");
        let t = keys.mint(&req("lobby")).unwrap();
        let c = keys.verify(&t, "lobby").unwrap();
        assert_eq!(c.role, Role::Moderator);
        assert_eq!(c.name.as_deref(), Some("Ann"));
        assert!(c.exp >= c.iat + 24 * 3600);
    }

    #[test]
    fn refusals() {
        let keys = TokenKeys::from_secret(b"secret");
        let t = keys.mint(&req("lobby")).unwrap();
        assert_eq!(
            keys.verify(&t, "other").unwrap_err().code,
            RefuseCode::WrongSession
        );
        let other = TokenKeys::from_secret(b"another");
        assert_eq!(
            other.verify(&t, "lobby").unwrap_err().code,
            RefuseCode::InvalidToken
        );
        assert_eq!(
            keys.verify("garbage", "lobby").unwrap_err().code,
            RefuseCode::InvalidToken
        );
        // An expired token, signed correctly.
        let claims = Claims {
            sid: "lobby".into(),
            role: Role::Publisher,
            name: None,
            data: None,
            exp: now_secs() - 10,
            iat: now_secs() - 100,
            jti: "x".into(),
            aud: None,
        };
        let expired = keys.sign(&claims).unwrap();
        assert_eq!(
            keys.verify(&expired, "lobby").unwrap_err().code,
            RefuseCode::TokenExpired
        );
    }

    #[test]
    fn mint_checks_its_input() {
        let keys = TokenKeys::from_secret(b"secret");
        assert!(keys.mint(&req("bad session")).is_err());
        let mut long = req("ok");
        long.ttl = Some(Duration::from_secs(31 * 24 * 3600));
        assert!(matches!(keys.mint(&long), Err(MintError::TtlTooLong(_))));
        let mut server = req(token::ANY_SESSION);
        server.role = Role::Server;
        let t = keys.mint(&server).unwrap();
        assert!(keys.verify(&t, "anything").is_ok());
    }

    #[test]
    fn a_token_is_for_one_relay() {
        let fp = |b: u8| signalbox_proto::Fingerprint([b; 32]);
        let here = TokenKeys::from_secret(b"shared secret").for_relay(&fp(1));
        let there = TokenKeys::from_secret(b"shared secret").for_relay(&fp(2));
        let t = here.mint(&req("s")).unwrap();
        assert_eq!(
            signalbox_proto::token::Claims::peek(&t).unwrap().aud,
            Some(fp(1).to_string())
        );
        assert!(here.verify(&t, "s").is_ok());
        let refused = there.verify(&t, "s").unwrap_err();
        assert_eq!(refused.code, RefuseCode::InvalidToken);
        assert!(
            refused.message.contains("another relay"),
            "{}",
            refused.message
        );
        // Tokens without an audience (made before the relay first ran) still work.
        let plain = TokenKeys::from_secret(b"shared secret")
            .mint(&req("s"))
            .unwrap();
        assert!(there.verify(&plain, "s").is_ok());
    }

    #[test]
    fn secret_persists() {
        let dir = tempfile::tempdir().unwrap();
        let a = TokenKeys::load_or_create(dir.path()).unwrap();
        let t = a.mint(&req("s")).unwrap();
        let b = TokenKeys::load_or_create(dir.path()).unwrap();
        assert!(b.verify(&t, "s").is_ok());
    }
}

/// The file in the data directory where a running relay says where it is.
const RUNNING_FILE: &str = "running.json";

/// A relay running from a data directory, as it records itself at start: a tool on the same
/// machine (the app) finds it, manages it through its REST API with a token made from the
/// same secret, and stops it by its process id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunningRelay {
    /// Its process.
    pub pid: u32,
    /// Its QUIC address.
    pub quic: std::net::SocketAddr,
    /// Its REST API, when it serves one.
    pub http: Option<std::net::SocketAddr>,
    /// Whether it accepts joins without a token.
    pub open: bool,
}

impl RunningRelay {
    /// The record in `data_dir`, if a relay wrote one (it may have stopped since: check its
    /// `/healthz`).
    pub fn read(data_dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(data_dir.join(RUNNING_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub(crate) fn write(&self, data_dir: &Path) -> Result<(), FileError> {
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        files::write_public(&data_dir.join(RUNNING_FILE), &json)
    }

    /// Forgets the record, if it is still this process's.
    pub(crate) fn remove(data_dir: &Path) {
        if Self::read(data_dir).is_some_and(|r| r.pid == std::process::id()) {
            let _ = std::fs::remove_file(data_dir.join(RUNNING_FILE));
        }
    }
}
