//! The REST API (axum): signal a session or one connection without joining, list sessions
//! and connections, remove a connection; `/healthz` and `/metrics` for operators.
//!
//! Auth is `Authorization: Bearer <token>` with a relay token of role `server` (any session)
//! or `moderator` (its own session). Errors are JSON: `{"code":404,"message":"…"}`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use signalbox_proto::token::{ANY_SESSION, Claims};
use signalbox_proto::{ConnectionId, ConnectionInfo, Role, SessionId, SignalError, Target};

use crate::cluster::Health;
use crate::server::Shared;

/// The largest request body: a signal at the relay's data limit, escaped as JSON, fits.
const BODY_LIMIT: usize = 512 * 1024;

/// A JSON error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: u16,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.status.as_u16(),
            message: &self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<SignalError> for ApiError {
    fn from(e: SignalError) -> Self {
        let status = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::BAD_REQUEST);
        Self::new(status, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        let status = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.body_text())
    }
}

/// The caller, from its bearer token.
#[derive(Debug)]
pub(crate) struct Caller(Claims);

impl FromRequestParts<Arc<Shared>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing Authorization: Bearer <token>",
            )
        })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "Authorization must be 'Bearer <token>'",
                )
            })?;
        let claims = shared
            .tokens
            .verify_any(token.trim())
            .map_err(|r| ApiError::new(StatusCode::UNAUTHORIZED, r.message))?;
        match claims.role {
            Role::Server | Role::Moderator => Ok(Caller(claims)),
            other => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("a {other} token may not use the REST API (server or moderator only)"),
            )),
        }
    }
}

impl Caller {
    /// Whether the caller may act on `session`.
    fn may(&self, session: &str) -> Result<(), ApiError> {
        let c = &self.0;
        let ok = (c.role == Role::Server && (c.sid == ANY_SESSION || c.sid == session))
            || (c.role == Role::Moderator && c.sid == session);
        if ok {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("the token is for session '{}', not '{session}'", c.sid),
            ))
        }
    }

    fn is_server_for_all(&self) -> bool {
        self.0.role == Role::Server && self.0.sid == ANY_SESSION
    }
}

pub(crate) fn session_id(sid: &str) -> Result<SessionId, ApiError> {
    SessionId::new(sid).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

fn connection_id(cid: &str) -> Result<ConnectionId, ApiError> {
    cid.parse()
        .map_err(|e: signalbox_proto::ids::InvalidConnectionId| {
            ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
        })
}

fn no_session(sid: &SessionId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no session '{sid}' on this relay (nobody has joined it)"),
    )
}

/// Relays a signal from the server into session `sid` (shared with the Vonage routes);
/// `absent` is the surface's 404 when nobody is in the session.
pub(crate) fn signal_session(
    shared: &Shared,
    sid: &SessionId,
    to: Target,
    body: &SignalBody,
    absent: fn(&SessionId) -> ApiError,
) -> Result<StatusCode, ApiError> {
    if !shared.session_exists(sid) {
        return Err(absent(sid));
    }
    shared.relay_signal(sid, to, &body.r#type, &body.data)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A signal sent through the API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignalBody {
    #[serde(default, rename = "type")]
    pub(crate) r#type: String,
    #[serde(default)]
    pub(crate) data: String,
}

async fn signal_all(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(sid): Path<String>,
    body: Result<Json<SignalBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    caller.may(&sid)?;
    let Json(body) = body?;
    signal_session(&shared, &session_id(&sid)?, Target::All, &body, no_session)
}

async fn signal_one(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path((sid, cid)): Path<(String, String)>,
    body: Result<Json<SignalBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    caller.may(&sid)?;
    let Json(body) = body?;
    let sid = session_id(&sid)?;
    let to = Target::One(connection_id(&cid)?);
    signal_session(&shared, &sid, to, &body, no_session)
}

#[derive(Serialize)]
struct SessionSummary {
    id: SessionId,
    connections: usize,
}

async fn list_sessions(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
) -> Json<Vec<SessionSummary>> {
    let out: Vec<SessionSummary> = shared
        .session_counts()
        .into_iter()
        // A token sees the sessions it may act on: a server token for `*` all of them, one
        // for a session (server or moderator) only that one.
        .filter(|(id, _)| caller.may(id.as_str()).is_ok())
        .map(|(id, connections)| SessionSummary { id, connections })
        .collect();
    Json(out)
}

async fn list_connections(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path(sid): Path<String>,
) -> Result<Json<Vec<ConnectionInfo>>, ApiError> {
    caller.may(&sid)?;
    let sid = session_id(&sid)?;
    if !shared.session_exists(&sid) {
        return Err(no_session(&sid));
    }
    Ok(Json(shared.members_of(&sid)))
}

async fn kick(
    State(shared): State<Arc<Shared>>,
    caller: Caller,
    Path((sid, cid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.may(&sid)?;
    let sid = session_id(&sid)?;
    let cid = connection_id(&cid)?;
    if !shared.session_exists(&sid) {
        return Err(no_session(&sid));
    }
    if !shared.remove(&sid, cid, "removed from the session by the server") {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("connection {cid} is not in session '{sid}'"),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `ok`, and for a cluster node whether it reaches the cluster: `cluster: connected; other
/// nodes: 2`, or `cluster: degraded …` while NATS is away (the node still serves its own
/// members, so it is alive: 200 either way).
async fn healthz(State(shared): State<Arc<Shared>>) -> String {
    match shared.others.health() {
        Health::Alone => "ok\n".to_owned(),
        Health::Connected(nodes) => format!("ok\ncluster: connected; other nodes: {nodes}\n"),
        Health::Degraded => {
            "ok\ncluster: degraded (NATS unreachable; serving this node's members only)\n"
                .to_owned()
        }
    }
}

async fn metrics(State(shared): State<Arc<Shared>>, caller: Caller) -> Result<Response, ApiError> {
    if !caller.is_server_for_all() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "metrics cover every session: they need a server token for '*'",
        ));
    }
    let text = shared.metrics_text();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

/// Counts every answer by status for `/metrics`.
async fn count(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    shared.metrics.rest_request(response.status().as_u16());
    response
}

/// The API's routes.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/sessions", get(list_sessions))
        .route("/v1/sessions/{sid}/signal", post(signal_all))
        .route("/v1/sessions/{sid}/connections", get(list_connections))
        .route(
            "/v1/sessions/{sid}/connections/{cid}/signal",
            post(signal_one),
        )
        .route("/v1/sessions/{sid}/connections/{cid}", delete(kick))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(crate::http::vonage::routes())
        .merge(crate::http::web::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(shared.clone(), count))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}
