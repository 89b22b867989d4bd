//! HTTPS: distribution's `http.tls` settings turned into a rustls server configuration, kept
//! current while the server runs. [`crate::server`] serves the registry over it; called by
//! [`crate::serve::run`] only.
//!
//! - [`TlsSettings::from_config`] validates `http.tls` (pure).
//! - [`Tls::start`] reads the certificate, key and client CAs (errors name the file) and spawns
//!   a reload task: when any of those files changes ([`crate::watch::Watcher`]), they are read
//!   again. A new certificate goes into the [`CertResolver`] every handshake asks, so the
//!   session cache survives; new client CAs make a new `ServerConfig` for new connections. A
//!   bad replacement keeps what is served now and is logged at error level. Connections in
//!   flight keep the certificate and configuration they started with.

mod certs;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ServerConfig, SupportedProtocolVersion};

pub use certs::CertResolver;

use crate::config::HttpConfig;
use crate::watch::{WatchError, Watcher};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("invalid http.tls configuration: {0}")]
    Config(String),
    #[error("cannot read TLS {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS {what} file {path} is not valid PEM: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("TLS {what} file {path} holds no {expected}")]
    Empty {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("TLS key {key} cannot be used with certificate {certificate}: {reason}")]
    KeyPair {
        certificate: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("TLS client CAs ({paths}) are unusable: {reason}")]
    ClientCas { paths: String, reason: String },
    #[error("cannot set up the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot watch the TLS files for changes: {0}")]
    Watch(#[from] WatchError),
}

/// Validated `http.tls` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// When non-empty, every client must present a certificate signed by one of these CAs.
    pub client_cas: Vec<PathBuf>,
    pub minimum: MinimumVersion,
}

/// `http.tls.minimumtls`. rustls implements TLS 1.2 and 1.3 only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinimumVersion {
    #[default]
    Tls12,
    Tls13,
}

static TLS12_AND_13: [&SupportedProtocolVersion; 2] =
    [&rustls::version::TLS13, &rustls::version::TLS12];
static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

impl MinimumVersion {
    fn protocol_versions(self) -> &'static [&'static SupportedProtocolVersion] {
        match self {
            MinimumVersion::Tls12 => &TLS12_AND_13,
            MinimumVersion::Tls13 => &TLS13_ONLY,
        }
    }
}

impl TlsSettings {
    /// `None` when `http.tls.certificate` is unset (plain HTTP), as in distribution.
    pub fn from_config(http: &HttpConfig) -> Result<Option<TlsSettings>, TlsError> {
        let Some(tls) = &http.tls else {
            return Ok(None);
        };
        let bad = |msg: &str| Err(TlsError::Config(msg.to_owned()));
        if tls.letsencrypt.as_ref().is_some_and(|v| !v.is_null()) {
            return bad(
                "http.tls.letsencrypt is not supported by Dockyard; provide http.tls.certificate \
                 and http.tls.key (for example from cert-manager), which are reloaded on change",
            );
        }
        let certificate = tls
            .certificate
            .clone()
            .filter(|p| !p.as_os_str().is_empty());
        let key = tls.key.clone().filter(|p| !p.as_os_str().is_empty());
        let (certificate, key) = match (certificate, key) {
            (Some(c), Some(k)) => (c, k),
            (None, None) if tls.clientcas.is_empty() => return Ok(None),
            (None, _) if !tls.clientcas.is_empty() => {
                return bad("http.tls.clientcas needs http.tls.certificate and http.tls.key");
            }
            (None, _) => return bad("http.tls.key is set but http.tls.certificate is not"),
            (Some(_), None) => return bad("http.tls.certificate is set but http.tls.key is not"),
        };
        let minimum = match tls.minimumtls.as_deref().map(str::trim) {
            None | Some("") => MinimumVersion::default(),
            Some(v) if v.eq_ignore_ascii_case("tls1.2") => MinimumVersion::Tls12,
            Some(v) if v.eq_ignore_ascii_case("tls1.3") => MinimumVersion::Tls13,
            Some(v) if v.eq_ignore_ascii_case("tls1.0") || v.eq_ignore_ascii_case("tls1.1") => {
                return Err(TlsError::Config(format!(
                    "http.tls.minimumtls {v:?} is not supported: Dockyard's TLS stack (rustls) \
                     only speaks TLS 1.2 and 1.3; set tls1.2 (the default) or tls1.3"
                )));
            }
            Some(v) => {
                return Err(TlsError::Config(format!(
                    "http.tls.minimumtls {v:?} is not a TLS version; use tls1.2 or tls1.3"
                )));
            }
        };
        Ok(Some(TlsSettings {
            certificate,
            key,
            client_cas: tls.clientcas.clone(),
            minimum,
        }))
    }

    /// Every file the configuration is read from.
    fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.certificate.clone(), self.key.clone()];
        files.extend(self.client_cas.iter().cloned());
        files
    }
}

/// The live TLS state of a server: the current certificate and `ServerConfig`.
#[derive(Debug)]
pub struct Tls {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    resolver: Arc<CertResolver>,
    config: RwLock<Arc<ServerConfig>>,
    /// The client CA files' bytes the current `config` was built from.
    client_ca_pem: Mutex<Vec<Vec<u8>>>,
}

impl Tls {
    /// Reads the files and builds the first configuration; errors name the file at fault.
    pub fn load(settings: TlsSettings) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = certs::load_certified_key(&settings.certificate, &settings.key, &provider)?;
        let resolver = Arc::new(CertResolver::new(key));
        let ca_pem = read_client_cas(&settings)?;
        let config = build_config(&settings, &provider, &resolver, &ca_pem)?;
        Ok(Tls {
            settings,
            provider,
            resolver,
            config: RwLock::new(config),
            client_ca_pem: Mutex::new(ca_pem),
        })
    }

    /// [`Tls::load`], then a task (on the current Tokio runtime) that reloads whenever one of
    /// the files changes. Failing to set up the file watch is a startup error too: a server that
    /// silently stopped following its certificate would serve it past its expiry.
    pub fn start(settings: TlsSettings) -> Result<Arc<Tls>, TlsError> {
        let tls = Arc::new(Tls::load(settings)?);
        let mut watcher = Watcher::new(&tls.settings.files())?;
        let reloading = tls.clone();
        tokio::spawn(async move {
            loop {
                watcher.changed().await;
                reloading.reload_logged();
            }
        });
        tracing::info!(
            certificate = %tls.settings.certificate.display(),
            fingerprint = %certs::fingerprint(&tls.resolver.current()),
            client_cas = tls.settings.client_cas.len(),
            "TLS enabled; certificate, key and client CAs are reloaded when their files change"
        );
        Ok(tls)
    }

    /// The configuration for a connection accepted now.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The certificate handshakes get now.
    pub fn resolver(&self) -> &CertResolver {
        &self.resolver
    }

    /// Reads the files again. The certificate and the client CAs are replaced independently,
    /// each only when it loads completely; on error what was served stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let cert_result = certs::load_certified_key(
            &self.settings.certificate,
            &self.settings.key,
            &self.provider,
        )
        .map(|key| {
            let (old, new) = (
                certs::fingerprint(&self.resolver.current()),
                certs::fingerprint(&key),
            );
            self.resolver.replace(key);
            if old != new {
                tracing::info!(fingerprint = %new, previous = %old, "TLS certificate reloaded");
            }
        });
        let ca_result = self.reload_client_cas();
        cert_result.and(ca_result)
    }

    fn reload_client_cas(&self) -> Result<(), TlsError> {
        if self.settings.client_cas.is_empty() {
            return Ok(());
        }
        let pem = read_client_cas(&self.settings)?;
        let mut current = self
            .client_ca_pem
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *current == pem {
            return Ok(());
        }
        let config = build_config(&self.settings, &self.provider, &self.resolver, &pem)?;
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config;
        *current = pem;
        tracing::info!(
            files = self.settings.client_cas.len(),
            "TLS client CAs reloaded"
        );
        Ok(())
    }

    fn reload_logged(&self) {
        if let Err(e) = self.reload() {
            tracing::error!(
                error = %e,
                "TLS reload failed; still serving the previous certificate and client CAs"
            );
        }
    }
}

fn read_client_cas(settings: &TlsSettings) -> Result<Vec<Vec<u8>>, TlsError> {
    let paths = settings.client_cas.iter();
    paths.map(|p| certs::read_pem("client CA", p)).collect()
}

/// A `ServerConfig` over `resolver`: protocol versions, client verification against the CAs
/// in `client_ca_pem` (the contents of `settings.client_cas`, in order), ALPN.
fn build_config(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
    resolver: &Arc<CertResolver>,
    client_ca_pem: &[Vec<u8>],
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(settings.minimum.protocol_versions())?;
    let builder = if settings.client_cas.is_empty() {
        builder.with_no_client_auth()
    } else {
        let roots = certs::client_roots(&settings.client_cas, client_ca_pem)?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TlsError::ClientCas {
                    paths: settings
                        .client_cas
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    reason: e.to_string(),
                })?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder.with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
