//! The HTTP listener (REST API, Vonage surface, metrics): hyper's HTTP/1 server with bounds
//! that hold against slow or numerous clients — a cap on open connections, a time limit on
//! reading a request's headers (slowloris), and one on answering a request.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Open HTTP connections, at most; more are closed at once.
pub(crate) const MAX_CONNECTIONS: usize = 256;
/// A request's headers must arrive within this.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A request must be answered within this (the body read included).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `cancel`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let router = router.layer(axum::middleware::from_fn(time_limit));
    loop {
        let (stream, remote) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, then go on.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%remote, "too many HTTP connections; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Handlers that need the client's address (the WebSocket link's admission) find it
        // as `ConnectInfo`.
        let service = TowerToHyperService::new(
            router
                .clone()
                .layer(axum::Extension(axum::extract::ConnectInfo(remote))),
        );
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%remote, error = %e, "HTTP connection ended");
                    }
                }
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, conn).await;
                }
            }
        });
    }
}

/// Answers 503 when a request takes longer than [`REQUEST_TIMEOUT`].
async fn time_limit(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => crate::rest::ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "the request took too long",
        )
        .into_response(),
    }
}
