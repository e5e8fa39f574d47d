//! WebTransport for browsers, on the relay's own QUIC endpoint.
//!
//! A browser dials the relay's UDP port with ALPN `h3` (beside native clients'
//! `signalbox/1`) and asks for a WebTransport session at [`PATH`]; inside it the protocol is
//! `signalbox/1` unchanged — the client's control stream (bidirectional) and send stream, and
//! one relay-opened delivery stream per sender.
//!
//! **Trust.** A page can reach a relay with a self-signed identity only through the
//! browser's `serverCertificateHashes`, which accepts nothing but an ECDSA P-256 certificate
//! valid for at most 14 days. So the relay keeps a second, short-lived certificate for `h3`
//! handshakes ([`WebCert`]): made at start, valid [`VALIDITY`], replaced every [`ROTATE`];
//! its SHA-256 is published at `GET /v1/webtransport` on the HTTP listener, where the SDK
//! reads it before dialing. A hash is as trustworthy as the channel it came over: loopback,
//! or the HTTP listener over TLS.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use signalbox_proto::ALPN;

/// The path of the WebTransport session.
pub(crate) const PATH: &str = "/v1/wt";
/// How long a WebTransport certificate is valid (browsers accept at most 14 days).
pub(crate) const VALIDITY: Duration = Duration::from_secs(13 * 24 * 3600);
/// How often the certificate is replaced: well before it expires, so a page that fetched the
/// hash just before a rotation still connects for days.
pub(crate) const ROTATE: Duration = Duration::from_secs(6 * 24 * 3600);

/// The short-lived certificate for browsers, and its SHA-256.
#[derive(Debug)]
pub(crate) struct WebCert {
    key: Arc<CertifiedKey>,
    /// SHA-256 of the certificate (DER).
    pub(crate) sha256: [u8; 32],
    /// When it stops being valid.
    pub(crate) not_after: std::time::SystemTime,
}

/// A WebTransport certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum WebCertError {
    /// rcgen could not make it.
    #[error("making the WebTransport certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls cannot use it.
    #[error("loading the WebTransport certificate: {0}")]
    Tls(#[from] rustls::Error),
}

impl WebCert {
    /// A new ECDSA P-256 certificate valid from an hour ago for [`VALIDITY`] (less the hour).
    pub(crate) fn generate() -> Result<Self, WebCertError> {
        let now = time::OffsetDateTime::now_utc();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])?;
        params.not_before = now - time::Duration::hours(1);
        params.not_after = params.not_before + VALIDITY;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.self_signed(&key)?;
        let der = cert.der().clone();
        let digest = ring::digest::digest(&ring::digest::SHA256, &der);
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(digest.as_ref());
        let provider = rustls::crypto::ring::default_provider();
        let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let signing = provider.key_provider.load_private_key(private)?;
        let not_after = std::time::SystemTime::UNIX_EPOCH
            + Duration::from_secs(params.not_after.unix_timestamp().max(0) as u64);
        Ok(Self {
            key: Arc::new(CertifiedKey::new(vec![der], signing)),
            sha256,
            not_after,
        })
    }
}

/// Chooses the certificate by ALPN: the short-lived one for `h3` (browsers), the relay's
/// identity for `signalbox/1` (native clients pin that one).
#[derive(Debug)]
pub(crate) struct CertChooser {
    pub(crate) identity: Arc<CertifiedKey>,
    pub(crate) web: Arc<ArcSwap<WebCert>>,
}

impl ResolvesServerCert for CertChooser {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offers = |p: &[u8]| hello.alpn().is_some_and(|mut a| a.any(|x| x == p));
        if offers(b"h3") && !offers(ALPN) {
            Some(self.web.load().key.clone())
        } else {
            Some(self.identity.clone())
        }
    }
}

/// Whether the connection negotiated `h3` (a browser's WebTransport).
pub(crate) fn is_h3(conn: &quinn::Connection) -> bool {
    conn.handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == b"h3")
}

/// Runs WebTransport's handshake on `conn`: HTTP/3 settings, then a CONNECT to [`PATH`]
/// (anything else is answered 404).
pub(crate) async fn accept(conn: quinn::Connection) -> Option<web_transport_quinn::Session> {
    let request = match web_transport_quinn::Request::accept(conn).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "WebTransport handshake failed");
            return None;
        }
    };
    if request.url.path() != PATH {
        tracing::debug!(url = %request.url, "WebTransport request for an unknown path");
        let _ = request
            .reject(web_transport_quinn::http::StatusCode::NOT_FOUND)
            .await;
        return None;
    }
    match request.ok().await {
        Ok(session) => Some(session),
        Err(e) => {
            tracing::debug!(error = %e, "WebTransport session failed");
            None
        }
    }
}

/// Replaces the certificate every `every` ([`ROTATE`]) until `cancel`.
pub(crate) async fn rotate(
    web: Arc<ArcSwap<WebCert>>,
    every: Duration,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match WebCert::generate() {
            Ok(cert) => {
                tracing::info!(sha256 = %hex::encode(cert.sha256), "new WebTransport certificate");
                web.store(Arc::new(cert));
            }
            Err(e) => tracing::warn!(error = %e, "could not replace the WebTransport certificate"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_certificate_is_what_browsers_accept() {
        let cert = WebCert::generate().expect("certificate");
        let der = &cert.key.cert[0];
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        assert_eq!(digest.as_ref(), cert.sha256);
        let (_, parsed) = x509_parser::parse_x509_certificate(der).expect("X.509");
        let validity = parsed.validity();
        let days = (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400;
        assert!(days < 14, "valid {days} days");
        // ECDSA with SHA-256 over P-256.
        assert_eq!(
            parsed.signature_algorithm.algorithm.to_id_string(),
            "1.2.840.10045.4.3.2"
        );
        assert!(ROTATE < VALIDITY / 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_certificate_is_replaced_before_it_expires() {
        let web = Arc::new(ArcSwap::from_pointee(
            WebCert::generate().expect("certificate"),
        ));
        let first = web.load().sha256;
        let cancel = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(rotate(web.clone(), ROTATE, cancel.clone()));
        tokio::time::sleep(ROTATE - Duration::from_secs(1)).await;
        assert_eq!(web.load().sha256, first, "not before its time");
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Let the rotation task run.
        for _ in 0..100 {
            if web.load().sha256 != first {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_ne!(web.load().sha256, first);
        cancel.cancel();
        task.await.expect("rotation task");
    }
}
