//! The HTTP listener (REST API, Vonage surface, metrics, the browser SDK and web client),
//! over TCP or TLS: hyper's HTTP/1 server with bounds that hold against slow or numerous
//! clients — a cap on open connections, a time limit on reading a request's headers
//! (slowloris) or finishing a TLS handshake, and one on answering a request.

pub(crate) mod rest;
pub mod vonage;
pub(crate) mod web;

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

/// Serves `router` on `listener` until `cancel`; over TLS when `tls` is given.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
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
        let tls = tls.clone();
        tracker.spawn(async move {
            let _slot = slot;
            match tls {
                None => connection(TokioIo::new(stream), service, remote, cancel).await,
                Some(acceptor) => {
                    // The TLS handshake counts toward the time a request's headers have.
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => connection(TokioIo::new(tls), service, remote, cancel).await,
                        Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Serves one HTTP/1 connection (with upgrades, for WebSockets) until it ends or `cancel`.
async fn connection<I>(
    io: TokioIo<I>,
    service: TowerToHyperService<Router>,
    remote: std::net::SocketAddr,
    cancel: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection(io, service).with_upgrades();
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
}

/// The HTTP listener's TLS settings: the relay's certificate, HTTP/1.1.
pub(crate) fn tls_acceptor(
    identity: &crate::transport::identity::Identity,
) -> Result<tokio_rustls::TlsAcceptor, rustls::Error> {
    let provider = Arc::new(signalbox_proto::crypto::provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(identity.certs.clone(), identity.key.clone_key())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Answers 503 when a request takes longer than [`REQUEST_TIMEOUT`].
async fn time_limit(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => crate::http::rest::ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "the request took too long",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use rustls::DigitallySignedStruct;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use signalbox_proto::Fingerprint;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::{Relay, RelayConfig};

    /// Takes any certificate and remembers its fingerprint (the test compares it).
    #[derive(Debug, Default)]
    struct Remember(Mutex<Option<Fingerprint>>);

    impl ServerCertVerifier for Remember {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Fingerprint::of_der(end_entity));
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    /// `--http-tls`: the listener speaks HTTPS with the relay's own certificate (the one its
    /// invites pin), and serves the SDK over it.
    #[tokio::test]
    async fn the_http_listener_serves_tls_with_the_relay_certificate() {
        let dir = tempfile::tempdir().expect("temp dir");
        let relay = Relay::spawn(RelayConfig {
            http: Some("127.0.0.1:0".parse().expect("address")),
            http_tls: true,
            ..RelayConfig::local(dir.path())
        })
        .await
        .expect("relay");
        let addr = relay.http_addr().expect("http");
        let seen = Arc::new(Remember::default());
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(seen.clone())
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("TLS handshake");
        tls.write_all(b"GET /signalbox.js HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .expect("request");
        let mut answer = String::new();
        tls.read_to_string(&mut answer).await.expect("answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.200}");
        assert!(answer.contains("initSession"));
        assert_eq!(
            *seen.0.lock().unwrap_or_else(|e| e.into_inner()),
            Some(relay.fingerprint())
        );
        // Plain HTTP on a TLS listener gets no page.
        let mut plain = tokio::net::TcpStream::connect(addr).await.expect("connect");
        plain
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("request");
        let mut buf = Vec::new();
        let _ = plain.read_to_end(&mut buf).await;
        assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
        relay.shutdown().await;
    }
}
