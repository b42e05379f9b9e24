//! TLS termination for `serve`: a certificate chain and its private key,
//! PEM files named by the configuration (`tls_cert`, `tls_key`), served
//! with rustls (ring, TLS 1.2 and 1.3, HTTP/1.1 by ALPN). Auth0's SDKs
//! talk to `https://` only; with this Waypass needs no proxy in front.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
pub use tokio_rustls::TlsAcceptor;

/// Time for a client to finish the TLS handshake: a few round trips, even
/// on a slow link; a client that stalls it must not hold its connection.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a certificate or key cannot be served; each names its file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls_cert {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("tls_key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("tls_cert and tls_key do not make a usable pair: {0}")]
    Pair(String),
}

/// Reads `cert` (a PEM chain, leaf first) and `key` (a PEM private key:
/// PKCS#8, PKCS#1 or SEC1) into an acceptor.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        path: cert.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Pair(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Pair(e.to_string()))?;
    // The server speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_certificate_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        let err = acceptor(&empty, &empty)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tls_cert") && err.contains("empty.pem"),
            "{err}"
        );
        let missing = dir.path().join("missing.pem");
        let err = acceptor(&missing, &empty)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.pem"), "{err}");
    }
}
