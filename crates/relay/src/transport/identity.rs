//! The relay's TLS identity: a self-signed certificate made on first start and kept in the
//! data directory, or a PEM certificate and key from a real CA.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use signalbox_proto::Fingerprint;

use crate::files::{self, FileError};

/// File names inside the data directory.
const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";

/// A certificate chain, its private key, and the leaf's fingerprint.
#[derive(Debug)]
pub struct Identity {
    /// The chain, leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf certificate: what clients pin.
    pub fingerprint: Fingerprint,
}

/// Why the identity could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The self-signed certificate could not be made.
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

impl Identity {
    /// Loads the self-signed identity from `data_dir`, making it on first use (the key file
    /// is readable by its owner only).
    pub fn load_or_create(data_dir: &Path) -> Result<Self, IdentityError> {
        let cert_path = data_dir.join(CERT_FILE);
        let key_path = data_dir.join(KEY_FILE);
        if !cert_path.exists() || !key_path.exists() {
            let names = vec!["localhost".to_owned(), "signalbox.local".to_owned()];
            let made = rcgen::generate_simple_self_signed(names)?;
            files::write_private(&key_path, made.signing_key.serialize_pem().as_bytes())?;
            files::write_public(&cert_path, made.cert.pem().as_bytes())?;
            tracing::info!(path = %cert_path.display(), "made a new self-signed relay identity");
        }
        Self::from_pem_files(&cert_path, &key_path)
    }

    /// Loads a certificate chain and key from PEM files.
    pub fn from_pem_files(cert_path: &Path, key_path: &Path) -> Result<Self, IdentityError> {
        let cert_pem = files::read(cert_path)?;
        let key_pem = files::read(key_path)?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| IdentityError::Pem {
                path: cert_path.to_owned(),
                message: format!("not a PEM certificate chain: {e}"),
            })?;
        let Some(leaf) = certs.first() else {
            return Err(IdentityError::Pem {
                path: cert_path.to_owned(),
                message: "no certificate in the file".into(),
            });
        };
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| IdentityError::Pem {
            path: key_path.to_owned(),
            message: format!("no private key in the file: {e}"),
        })?;
        Ok(Self {
            fingerprint: Fingerprint::of_der(leaf),
            certs,
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint, "the identity persists");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = tempfile::tempdir().unwrap();
        let c = Identity::load_or_create(other.path()).unwrap();
        assert_ne!(a.fingerprint, c.fingerprint);
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&cert, "not pem").unwrap();
        std::fs::write(&key, "not pem").unwrap();
        let err = Identity::from_pem_files(&cert, &key)
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.pem"), "{err}");
    }
}
