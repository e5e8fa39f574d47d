//! The Vonage (OpenTok) drop-in: the REST paths, bodies, status codes and auth that the
//! official OpenTok server SDKs use, on the relay's HTTP listener beside `/v1`, and the client
//! tokens those SDKs mint locally, accepted when a Signalbox client joins.
//!
//! - Credentials: one API key (digits) and secret (hex) per deployment, made on first start
//!   in the data directory (`vonage.json`, owner-only) or set in `relay.toml`;
//!   `signalbox credentials` prints them.
//! - Server calls carry `X-OPENTOK-AUTH`: an HS256 JWT with `iss` = the API key,
//!   `ist` = `project`, signed with the secret. Anything else is a 403, as Vonage answers.
//! - Session ids are `2_` + base64url of `1~<api key>~~<ms>~<random>~`, the shape the SDKs'
//!   token generators check (they decode the id and look for their API key).
//! - Client tokens: the JWT form the SDKs make by default (HS256 with the secret; `iss`, `ist`,
//!   `scope: session.connect`, `session_id`, `role`, `connection_data`, `exp`) and the legacy
//!   `T1==` form (base64 of `partner_id=<key>&sig=<hex HMAC-SHA1>:<urlencoded data>`).
//!   Roles map to Signalbox's: moderator, publisher, subscriber; `publisheronly` (may not
//!   signal) becomes a subscriber.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use signalbox_proto::{ConnectionId, RefuseCode, Refused, Role, SessionId, Target};
use subtle::ConstantTimeEq;

use crate::files::{self, FileError};
use crate::http::rest::{ApiError, SignalBody, session_id, signal_session};
use crate::server::Shared;

const CREDENTIALS_FILE: &str = "vonage.json";

/// The API key and secret of the Vonage-compatible surface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The API key (a project id: digits).
    pub api_key: String,
    /// The API secret (hex).
    pub api_secret: String,
}

impl Credentials {
    /// Loads them from `data_dir`, making new ones on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, FileError> {
        let path = data_dir.join(CREDENTIALS_FILE);
        if let Ok(bytes) = std::fs::read(&path) {
            let bad = |why: String| FileError {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, why),
            };
            let c = serde_json::from_slice::<Credentials>(&bytes).map_err(|e| {
                bad(format!(
                    "not valid credentials ({e}); remove it to make new ones"
                ))
            })?;
            if c.api_secret.len() < crate::config::MIN_SECRET_BYTES {
                return Err(bad(format!(
                    "the API secret is {} characters; at least {} are needed (remove the file to make new credentials)",
                    c.api_secret.len(),
                    crate::config::MIN_SECRET_BYTES
                )));
            }
            return Ok(c);
        }
        // From the system's generator: an 8-digit key and a 40-hex-digit (160-bit) secret.
        let mut random = [0u8; 24];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random).map_err(
            |_| FileError {
                path: path.clone(),
                source: std::io::Error::other("no system randomness"),
            },
        )?;
        let [a, b, c, d, ..] = random;
        let api_key = format!("{:08}", u32::from_be_bytes([a, b, c, d]) % 100_000_000);
        let api_secret = hex::encode(&random[4..]);
        let c = Credentials {
            api_key,
            api_secret,
        };
        let json = serde_json::to_vec_pretty(&c).unwrap_or_default();
        files::write_private(&path, &json)?;
        Ok(c)
    }

    /// A new session id in the shape the SDKs expect.
    pub fn new_session_id(&self) -> SessionId {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let random = ConnectionId::random().short();
        let inner = format!("1~{}~~{now}~{random}~", self.api_key);
        let id = format!("2_{}", URL_SAFE_NO_PAD.encode(inner));
        SessionId::new(id).unwrap_or_else(|_| SessionId::new("vonage").expect("valid"))
    }

    fn secret_bytes(&self) -> &[u8] {
        self.api_secret.as_bytes()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn role_from(name: &str) -> Option<Role> {
    match name {
        "moderator" => Some(Role::Moderator),
        "publisher" => Some(Role::Publisher),
        "subscriber" | "publisheronly" => Some(Role::Subscriber),
        _ => None,
    }
}

/// Who a Vonage client token admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VonageGrant {
    /// The role.
    pub role: Role,
    /// Connection data.
    pub data: String,
}

fn refused(code: RefuseCode, message: impl Into<String>) -> Refused {
    Refused {
        code,
        message: message.into(),
    }
}

/// The claims of the SDKs' JWT client tokens.
#[derive(Debug, Deserialize)]
struct ClientClaims {
    iss: String,
    #[serde(default)]
    ist: String,
    #[serde(default)]
    scope: String,
    session_id: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    connection_data: Option<String>,
}

/// Checks a client token an OpenTok SDK made (JWT or legacy `T1==`) for `session`.
pub fn verify_client_token(
    creds: &Credentials,
    token: &str,
    session: &str,
) -> Result<VonageGrant, Refused> {
    if let Some(body) = token.strip_prefix("T1==") {
        return verify_t1(creds, body, session);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<ClientClaims>(
        token,
        &DecodingKey::from_secret(creds.secret_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        ErrorKind::ExpiredSignature => refused(RefuseCode::TokenExpired, "the token has expired"),
        _ => refused(
            RefuseCode::InvalidToken,
            "the token was not made with this relay's API secret",
        ),
    })?;
    let c = data.claims;
    if c.iss != creds.api_key || c.ist != "project" || c.scope != "session.connect" {
        return Err(refused(
            RefuseCode::InvalidToken,
            "the token is not a session.connect token of this project",
        ));
    }
    if c.session_id != session {
        return Err(refused(
            RefuseCode::WrongSession,
            format!(
                "the token is for session '{}', not '{session}'",
                c.session_id
            ),
        ));
    }
    let role = role_from(c.role.as_deref().unwrap_or("publisher"))
        .ok_or_else(|| refused(RefuseCode::InvalidToken, "the token's role is unknown"))?;
    Ok(VonageGrant {
        role,
        data: c.connection_data.unwrap_or_default(),
    })
}

/// The legacy token: base64 of `partner_id=<key>&sig=<hex HMAC-SHA1 of data>:<data>`.
fn verify_t1(creds: &Credentials, body: &str, session: &str) -> Result<VonageGrant, Refused> {
    let bad = || {
        refused(
            RefuseCode::InvalidToken,
            "the token is not a valid OpenTok token",
        )
    };
    let decoded = STANDARD.decode(body.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (head, data) = text.split_once(':').ok_or_else(bad)?;
    let mut partner = None;
    let mut sig = None;
    for (k, v) in url::form_urlencoded::parse(head.as_bytes()) {
        match &*k {
            "partner_id" => partner = Some(v.into_owned()),
            "sig" => sig = Some(v.into_owned()),
            _ => {}
        }
    }
    if partner.as_deref() != Some(creds.api_key.as_str()) {
        return Err(refused(
            RefuseCode::InvalidToken,
            "the token is for another project",
        ));
    }
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        creds.secret_bytes(),
    );
    let expected = hex::encode(ring::hmac::sign(&key, data.as_bytes()).as_ref());
    let given = sig.unwrap_or_default();
    if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        return Err(refused(
            RefuseCode::InvalidToken,
            "the token's signature does not match this relay's API secret",
        ));
    }
    let mut sid = None;
    let mut expire = None;
    let mut role = None;
    let mut connection_data = String::new();
    for (k, v) in url::form_urlencoded::parse(data.as_bytes()) {
        match &*k {
            "session_id" => sid = Some(v.into_owned()),
            "expire_time" => expire = v.parse::<u64>().ok(),
            "role" => role = Some(v.into_owned()),
            "connection_data" => connection_data = v.into_owned(),
            _ => {}
        }
    }
    if expire.is_none_or(|e| e <= now_secs()) {
        return Err(refused(RefuseCode::TokenExpired, "the token has expired"));
    }
    let sid = sid.ok_or_else(bad)?;
    if sid != session {
        return Err(refused(
            RefuseCode::WrongSession,
            format!("the token is for session '{sid}', not '{session}'"),
        ));
    }
    let role = role_from(role.as_deref().unwrap_or("publisher"))
        .ok_or_else(|| refused(RefuseCode::InvalidToken, "the token's role is unknown"))?;
    Ok(VonageGrant {
        role,
        data: connection_data,
    })
}

/// The longest life a server-call token may have (`exp − iat`). The SDKs mint them for three
/// (Python) to five (Node, Java, Ruby, PHP, .NET) minutes, per request or cached briefly; a
/// longer-lived one is not what an SDK made, and a leaked one would stay a key for too long.
pub const MAX_PROJECT_TOKEN_LIFETIME: u64 = 5 * 60;

/// Claims that only a *client* token carries. A token with any of them was minted for joining
/// a session, and a participant holds it: it is never a server credential, however it is
/// signed.
const CLIENT_ONLY_CLAIMS: [&str; 4] = ["scope", "session_id", "role", "connection_data"];

/// Why an `X-OPENTOK-AUTH` token is not a server credential of this project, if it is not.
fn check_project_claims(
    claims: &serde_json::Map<String, serde_json::Value>,
    api_key: &str,
    now: u64,
) -> Result<(), &'static str> {
    if CLIENT_ONLY_CLAIMS.iter().any(|c| claims.contains_key(*c)) {
        return Err(
            "X-OPENTOK-AUTH is a client token (it names a session, role or scope): \
             server calls need a project token",
        );
    }
    let text = |k: &str| claims.get(k).and_then(|v| v.as_str());
    let iss_ok =
        text("iss").is_some_and(|iss| bool::from(iss.as_bytes().ct_eq(api_key.as_bytes())));
    if text("ist") != Some("project") || !iss_ok {
        return Err("X-OPENTOK-AUTH is not for this project");
    }
    let (Some(iat), Some(exp)) = (
        claims.get("iat").and_then(|v| v.as_u64()),
        claims.get("exp").and_then(|v| v.as_u64()),
    ) else {
        return Err("X-OPENTOK-AUTH must carry iat and exp");
    };
    if exp <= iat || exp - iat > MAX_PROJECT_TOKEN_LIFETIME {
        return Err("X-OPENTOK-AUTH lives too long: exp − iat may be at most 5 minutes");
    }
    if iat > now + PROJECT_TOKEN_LEEWAY {
        return Err("X-OPENTOK-AUTH was issued in the future");
    }
    Ok(())
}

/// Clock skew allowed between the SDK's machine and the relay, in seconds.
const PROJECT_TOKEN_LEEWAY: u64 = 5;

/// A server call authorised by `X-OPENTOK-AUTH`: an HS256 JWT signed with the API secret, with
/// `iss` = the API key, `ist` = `project`, `iat` and an `exp` at most five minutes later — and
/// none of a client token's claims.
#[derive(Debug)]
pub(crate) struct Project;

impl FromRequestParts<Arc<Shared>> for Project {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        let forbidden = |m: &str| ApiError::new(StatusCode::FORBIDDEN, m);
        let creds = &shared.vonage;
        let token = parts
            .headers
            .get("x-opentok-auth")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| forbidden("missing X-OPENTOK-AUTH"))?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = PROJECT_TOKEN_LEEWAY;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iat"]);
        let claims = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &DecodingKey::from_secret(creds.secret_bytes()),
            &validation,
        )
        .map_err(|_| {
            forbidden("invalid X-OPENTOK-AUTH: signed with another secret, malformed, or expired")
        })?
        .claims;
        check_project_claims(&claims, &creds.api_key, now_secs()).map_err(forbidden)?;
        // The API key in the path must be ours too.
        if let Some(key) = parts
            .uri
            .path()
            .strip_prefix("/v2/project/")
            .and_then(|p| p.split('/').next())
            && key != creds.api_key
        {
            return Err(forbidden("the API key in the path is not this relay's"));
        }
        Ok(Project)
    }
}

#[derive(Serialize)]
struct CreatedSession {
    session_id: SessionId,
    project_id: String,
    partner_id: String,
    create_dt: String,
    media_server_url: String,
}

async fn create_session(
    State(shared): State<Arc<Shared>>,
    _p: Project,
) -> Json<Vec<CreatedSession>> {
    let creds = &shared.vonage;
    Json(vec![CreatedSession {
        session_id: creds.new_session_id(),
        project_id: creds.api_key.clone(),
        partner_id: creds.api_key.clone(),
        create_dt: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        media_server_url: String::new(),
    }])
}

/// Vonage's 404s.
fn no_session(sid: &SessionId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("nobody is connected to session {sid}"),
    )
}

fn not_connected() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "the client specified by the connectionId property is not connected to the session",
    )
}

async fn signal(
    State(shared): State<Arc<Shared>>,
    _p: Project,
    UrlPath((_key, sid)): UrlPath<(String, String)>,
    body: Result<Json<SignalBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(body) = body?;
    signal_session(&shared, &session_id(&sid)?, Target::All, &body, no_session)
}

async fn signal_one(
    State(shared): State<Arc<Shared>>,
    _p: Project,
    UrlPath((_key, sid, cid)): UrlPath<(String, String, String)>,
    body: Result<Json<SignalBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(body) = body?;
    let sid = session_id(&sid)?;
    let cid: ConnectionId = cid.parse().map_err(|_| not_connected())?;
    signal_session(&shared, &sid, Target::One(cid), &body, no_session)
}

async fn force_disconnect(
    State(shared): State<Arc<Shared>>,
    _p: Project,
    UrlPath((_key, sid, cid)): UrlPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let sid = session_id(&sid)?;
    let cid: ConnectionId = cid.parse().map_err(|_| not_connected())?;
    if !shared.remove(&sid, cid, "removed from the session by the server") {
        return Err(not_connected());
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionItem {
    connection_id: ConnectionId,
    connection_state: &'static str,
    created_at: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionList {
    count: usize,
    project_id: String,
    session_id: SessionId,
    items: Vec<ConnectionItem>,
}

async fn list_connections(
    State(shared): State<Arc<Shared>>,
    _p: Project,
    UrlPath((_key, sid)): UrlPath<(String, String)>,
) -> Result<Json<ConnectionList>, ApiError> {
    let sid = session_id(&sid)?;
    let items: Vec<ConnectionItem> = shared
        .members_of(&sid)
        .into_iter()
        .map(|m| ConnectionItem {
            connection_id: m.id,
            connection_state: "Connected",
            created_at: m.joined_at,
        })
        .collect();
    Ok(Json(ConnectionList {
        count: items.len(),
        project_id: shared.vonage.api_key.clone(),
        session_id: sid,
        items,
    }))
}

/// The Vonage-shaped routes.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/session/create", post(create_session))
        .route("/v2/project/{key}/session/{sid}/signal", post(signal))
        .route(
            "/v2/project/{key}/session/{sid}/connection",
            get(list_connections),
        )
        .route(
            "/v2/project/{key}/session/{sid}/connection/{cid}/signal",
            post(signal_one),
        )
        .route(
            "/v2/project/{key}/session/{sid}/connection/{cid}",
            delete(force_disconnect),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            api_key: "12345678".into(),
            api_secret: "0123456789abcdef0123456789abcdef01234567".into(),
        }
    }

    /// A legacy token made the way the SDKs make it.
    fn t1(c: &Credentials, session: &str, role: &str, expire: u64, data: &str) -> String {
        let payload = format!(
            "session_id={session}&create_time={}&expire_time={expire}&role={role}&nonce=42&initial_layout_class_list=&connection_data={}",
            now_secs(),
            url::form_urlencoded::byte_serialize(data.as_bytes()).collect::<String>()
        );
        let key = ring::hmac::Key::new(
            ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            c.api_secret.as_bytes(),
        );
        let sig = hex::encode(ring::hmac::sign(&key, payload.as_bytes()).as_ref());
        format!(
            "T1=={}",
            STANDARD.encode(format!("partner_id={}&sig={sig}:{payload}", c.api_key))
        )
    }

    #[test]
    fn legacy_tokens() {
        let c = creds();
        let sid = c.new_session_id();
        let later = now_secs() + 3600;
        let ok = verify_client_token(
            &c,
            &t1(&c, sid.as_str(), "moderator", later, "seat=3"),
            sid.as_str(),
        )
        .unwrap();
        assert_eq!(
            ok,
            VonageGrant {
                role: Role::Moderator,
                data: "seat=3".into()
            }
        );
        // Tampered: another role under the same signature.
        let tampered = {
            let good = t1(&c, sid.as_str(), "subscriber", later, "");
            let text = String::from_utf8(STANDARD.decode(&good[4..]).unwrap()).unwrap();
            format!(
                "T1=={}",
                STANDARD.encode(text.replace("role=subscriber", "role=moderator"))
            )
        };
        assert_eq!(
            verify_client_token(&c, &tampered, sid.as_str())
                .unwrap_err()
                .code,
            RefuseCode::InvalidToken
        );
        let expired = t1(&c, sid.as_str(), "publisher", now_secs() - 1, "");
        assert_eq!(
            verify_client_token(&c, &expired, sid.as_str())
                .unwrap_err()
                .code,
            RefuseCode::TokenExpired
        );
        let other = c.new_session_id();
        let wrong = t1(&c, other.as_str(), "publisher", later, "");
        assert_eq!(
            verify_client_token(&c, &wrong, sid.as_str())
                .unwrap_err()
                .code,
            RefuseCode::WrongSession
        );
        let bad_role = t1(&c, sid.as_str(), "admin", later, "");
        assert_eq!(
            verify_client_token(&c, &bad_role, sid.as_str())
                .unwrap_err()
                .code,
            RefuseCode::InvalidToken
        );
        let mut foreign = c.clone();
        foreign.api_secret = "ffffffffffffffffffffffffffffffffffffffff".into();
        assert!(
            verify_client_token(
                &c,
                &t1(&foreign, sid.as_str(), "publisher", later, ""),
                sid.as_str()
            )
            .is_err()
        );
        assert_eq!(
            verify_client_token(
                &c,
                &t1(&c, sid.as_str(), "publisheronly", later, ""),
                sid.as_str()
            )
            .unwrap()
            .role,
            Role::Subscriber
        );
    }

    #[test]
    fn jwt_tokens() {
        let c = creds();
        let sid = c.new_session_id();
        let make = |iss: &str, scope: &str, session: &str, exp: u64, secret: &str| {
            let claims = serde_json::json!({
                "iss": iss, "ist": "project", "scope": scope, "session_id": session,
                "role": "publisher", "connection_data": "name=ann", "iat": now_secs(), "exp": exp, "nonce": 7
            });
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(Algorithm::HS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap()
        };
        let later = now_secs() + 600;
        let g = verify_client_token(
            &c,
            &make(
                "12345678",
                "session.connect",
                sid.as_str(),
                later,
                &c.api_secret,
            ),
            sid.as_str(),
        )
        .unwrap();
        assert_eq!(
            g,
            VonageGrant {
                role: Role::Publisher,
                data: "name=ann".into()
            }
        );
        let secret = c.api_secret.as_str();
        let (key, scope, sid) = ("12345678", "session.connect", sid.as_str());
        let refused = [
            (
                (key, scope, sid, now_secs() - 5, secret),
                RefuseCode::TokenExpired,
            ),
            (
                ("99999999", scope, sid, later, secret),
                RefuseCode::InvalidToken,
            ),
            ((key, "other", sid, later, secret), RefuseCode::InvalidToken),
            (
                (key, scope, "elsewhere", later, secret),
                RefuseCode::WrongSession,
            ),
            (
                (key, scope, sid, later, "not the secret"),
                RefuseCode::InvalidToken,
            ),
        ];
        for ((iss, scope, session, exp, secret), want) in refused {
            let token = make(iss, scope, session, exp, secret);
            let got = verify_client_token(&c, &token, sid).unwrap_err().code;
            assert_eq!(
                got, want,
                "iss {iss}, scope {scope}, session {session}, exp {exp}"
            );
        }
    }

    #[test]
    fn only_short_lived_project_tokens_are_server_credentials() {
        let now = now_secs();
        let claims = |v: serde_json::Value| v.as_object().unwrap().clone();
        let project = serde_json::json!({
            "iss": "12345678", "ist": "project", "iat": now, "exp": now + 180, "jti": "0.5"
        });
        assert_eq!(
            check_project_claims(&claims(project.clone()), "12345678", now),
            Ok(())
        );
        // A client token carries the same iss and ist, and one of these: never a server key.
        for claim in CLIENT_ONLY_CLAIMS {
            let mut c = claims(project.clone());
            c.insert(claim.into(), "x".into());
            assert!(
                check_project_claims(&c, "12345678", now).is_err(),
                "{claim}"
            );
        }
        let mut client = claims(project.clone());
        client.insert("scope".into(), "session.connect".into());
        client.insert("session_id".into(), "2_abc".into());
        client.insert("role".into(), "subscriber".into());
        assert!(check_project_claims(&client, "12345678", now).is_err());
        let with = |k: &str, v: serde_json::Value| {
            let mut c = claims(project.clone());
            c.insert(k.into(), v);
            c
        };
        let refused = [
            with("iss", "99999999".into()),
            with("ist", "account".into()),
            with("exp", (now + MAX_PROJECT_TOKEN_LIFETIME + 1).into()),
            with("exp", now.into()),
            with("iat", (now + 60).into()),
            with("iat", "yesterday".into()),
        ];
        for c in refused {
            assert!(check_project_claims(&c, "12345678", now).is_err(), "{c:?}");
        }
        let mut no_iat = claims(project);
        no_iat.remove("iat");
        assert!(check_project_claims(&no_iat, "12345678", now).is_err());
    }

    #[test]
    fn session_ids_carry_the_api_key_as_the_sdks_check() {
        let c = creds();
        let sid = c.new_session_id();
        let body = sid.as_str().strip_prefix("2_").unwrap();
        let decoded = String::from_utf8(URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
        assert!(decoded.split('~').any(|p| p == c.api_key), "{decoded}");
        assert_ne!(c.new_session_id(), sid);
    }

    #[test]
    fn credentials_persist_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = Credentials::load_or_create(dir.path()).unwrap();
        assert_eq!(a.api_key.len(), 8);
        assert!(a.api_key.chars().all(|c| c.is_ascii_digit()));
        assert_eq!(a.api_secret.len(), 40);
        assert_eq!(Credentials::load_or_create(dir.path()).unwrap(), a);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CREDENTIALS_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
