//! What the HTTP listener serves to browsers: the JavaScript SDK (`/signalbox.js`), the web
//! client (`/`, `/join`, `/app.js`), the WebTransport certificate's hash (`/v1/webtransport`), and the
//! WebSocket link (`/v1/ws`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde::Serialize;

use crate::admission::Decision;
use crate::http::rest::ApiError;
use crate::server::Shared;
use crate::transport::link::Link;

/// The SDK: plain JavaScript, served as is.
const SDK: &str = include_str!("../../web/signalbox.js");
/// The web client, built on the SDK: its page and its script.
const PAGE: &str = include_str!("../../web/index.html");
const APP: &str = include_str!("../../web/app.js");
/// The page's icon: the app's.
const ICON: &str = include_str!("../../../../assets/signalbox.svg");

/// The browser routes.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(page))
        .route("/join", get(page))
        .route("/signalbox.js", get(sdk))
        .route("/app.js", get(app))
        .route("/favicon.svg", get(icon))
        .route("/v1/webtransport", get(webtransport))
        .route("/v1/ws", get(websocket))
}

fn text(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn sdk() -> Response {
    text(SDK, "text/javascript; charset=utf-8")
}

async fn icon() -> Response {
    text(ICON, "image/svg+xml")
}

async fn app() -> Response {
    text(APP, "text/javascript; charset=utf-8")
}

async fn page() -> Response {
    let mut response = text(PAGE, "text/html; charset=utf-8");
    // The page loads only its own script and talks only to this relay.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self'; \
             connect-src 'self' https: wss: ws:; img-src 'self' data:",
        ),
    );
    response
}

/// Where and how a browser reaches the relay over WebTransport.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WebTransportInfo {
    /// The relay's UDP port (the host is the one the page used for this listener).
    port: u16,
    path: &'static str,
    /// For `new WebTransport(url, { serverCertificateHashes })`.
    server_certificate_hashes: Vec<CertificateHash>,
    /// When the certificate stops being valid (Unix ms).
    expires: u64,
}

#[derive(Debug, Serialize)]
struct CertificateHash {
    algorithm: &'static str,
    /// Base64 of the SHA-256.
    value: String,
}

async fn webtransport(State(shared): State<Arc<Shared>>) -> Response {
    let cert = shared.web_cert.load();
    let info = WebTransportInfo {
        port: shared.quic_port,
        path: crate::transport::webtransport::PATH,
        server_certificate_hashes: vec![CertificateHash {
            algorithm: "sha-256",
            value: base64::engine::general_purpose::STANDARD.encode(cert.sha256),
        }],
        expires: cert
            .not_after
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    };
    (
        [(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        )],
        axum::Json(info),
    )
        .into_response()
}

/// A browser's WebSocket link: admitted like a QUIC connection (a pending slot, bounded per
/// address), then served by the same connection task.
async fn websocket(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // TCP has proven the address already.
    let pending = match shared.admission.incoming(remote.ip(), true) {
        Decision::Accept(pending) => pending,
        _ => {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many connections joining; try again shortly",
            )
            .into_response();
        }
    };
    upgrade
        .max_message_size(crate::transport::ws::MAX_MESSAGE)
        .max_frame_size(crate::transport::ws::MAX_MESSAGE)
        .on_upgrade(move |socket| async move {
            let span = tracing::info_span!("ws", %remote, id = tracing::field::Empty);
            let liveness = crate::transport::ws::Liveness {
                keep_alive: shared.config.keep_alive,
                idle_timeout: shared.config.idle_timeout,
            };
            let link = crate::transport::ws::start(socket, remote.ip(), liveness, &shared.tracker);
            let serve =
                crate::transport::connection::serve_link(Link::WebSocket(link), shared, pending);
            tracing::Instrument::instrument(serve, span).await
        })
}
