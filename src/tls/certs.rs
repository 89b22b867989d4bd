//! Reading PEM files into rustls types (a certificate chain with its key, a store of client
//! CAs), and [`CertResolver`], the swappable certificate every handshake asks for. Used by
//! [`super::Tls`] at startup and on every reload.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, RootCertStore};
use sha2::{Digest, Sha256};

use super::TlsError;

/// Reads a PEM file whole; `what` names it in errors ("certificate", "key", "client CA").
pub(super) fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn pem_error(what: &'static str, path: &Path, e: pem::Error) -> TlsError {
    TlsError::Pem {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Parses every `CERTIFICATE` block of a PEM file, in order.
pub(super) fn parse_certificates(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_owned(),
            expected: "PEM CERTIFICATE block",
        });
    }
    Ok(certs)
}

/// The certificate chain of `cert_path` with the private key of `key_path` (PKCS#8, PKCS#1 or
/// SEC1), checked to belong together.
pub(super) fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = parse_certificates(
        "certificate",
        cert_path,
        &read_pem("certificate", cert_path)?,
    )?;
    let key_pem = read_pem("key", key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::Empty {
            what: "key",
            path: key_path.to_owned(),
            expected: "PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block",
        },
        other => pem_error("key", key_path, other),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::KeyPair {
        certificate: cert_path.to_owned(),
        key: key_path.to_owned(),
        reason: match e {
            rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
                "the key does not belong to the certificate".to_owned()
            }
            other => other.to_string(),
        },
    })
}

/// The client CAs read from `paths` (their contents in `pems`, in the same order), in one
/// store. Every file must hold at least one certificate.
pub(super) fn client_roots(paths: &[PathBuf], pems: &[Vec<u8>]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for (path, pem) in paths.iter().zip(pems) {
        for cert in parse_certificates("client CA", path, pem)? {
            roots.add(cert).map_err(|e| TlsError::Pem {
                what: "client CA",
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(roots)
}

/// `sha256:<hex>` of the end-entity certificate, to tell certificates apart in logs.
pub(super) fn fingerprint(key: &CertifiedKey) -> String {
    key.cert
        .first()
        .map(|c| format!("sha256:{}", hex::encode(Sha256::digest(c))))
        .unwrap_or_default()
}

/// Serves the current certificate to every handshake; a reload swaps it. A handshake reads
/// the `Arc` once, so connections never see half a swap.
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertResolver {
    pub(super) fn new(key: CertifiedKey) -> CertResolver {
        CertResolver {
            current: RwLock::new(Arc::new(key)),
        }
    }

    /// The certificate handshakes get now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        // A panic while holding the lock cannot leave the Arc half-written: use it anyway.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn replace(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
