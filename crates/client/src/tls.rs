//! How the client trusts a relay: by the SHA-256 fingerprint of its certificate (pinned), or,
//! without one, by the platform's root certificates.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use signalbox_proto::{ALPN, Fingerprint};

/// What the pinning verifier saw, so a mismatch can be reported as such.
pub(crate) type Seen = Arc<Mutex<Option<Fingerprint>>>;

/// Accepts exactly the certificate with the pinned fingerprint (and checks that the relay
/// holds its key, through the handshake signature).
#[derive(Debug)]
struct PinnedVerifier {
    expected: Fingerprint,
    seen: Seen,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = Fingerprint::of_der(end_entity);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(actual);
        }
        if actual == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "certificate fingerprint {actual} does not match the pinned {}",
                self.expected
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// No fingerprint was given and the platform has no root certificates.
    #[error("no fingerprint to pin and no system root certificates; use an invite with fp=…")]
    NoRoots,
    /// rustls refused the settings.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// quinn refused the settings.
    #[error("QUIC TLS: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// The QUIC client crypto for a relay, pinned to `fingerprint` when given.
pub(crate) fn client_crypto(
    fingerprint: Option<Fingerprint>,
    seen: Seen,
) -> Result<quinn::crypto::rustls::QuicClientConfig, TlsSetupError> {
    let provider = Arc::new(signalbox_proto::crypto::provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let mut tls = match fingerprint {
        Some(expected) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                expected,
                seen,
                provider,
            }))
            .with_no_client_auth(),
        None => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(TlsSetupError::NoRoots);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    tls.alpn_protocols = vec![ALPN.to_vec()];
    Ok(quinn::crypto::rustls::QuicClientConfig::try_from(tls)?)
}
