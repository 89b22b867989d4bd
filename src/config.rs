//! Registry configuration: the commonly used subset of distribution's `config.yml`, with
//! the same `REGISTRY_<SECTION>_<KEY>` environment overrides. Unknown keys and sections
//! Dockyard does not implement produce warnings, never a crash.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

pub mod catalog;
pub mod gc;
mod lenient;
pub mod s3;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub version: Option<Value>,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub proxy: Option<ProxyConfig>,
    #[serde(default)]
    pub validation: ValidationConfig,
    /// Dockyard extension: the built-in web UI.
    #[serde(default)]
    pub ui: UiConfig,
    /// Dockyard extension: upkeep of the repository name index.
    #[serde(default)]
    pub catalog: catalog::CatalogConfig,
    /// Sections distribution has and Dockyard ignores (each named in a warning).
    #[serde(flatten)]
    pub ignored: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct LogConfig {
    pub level: Option<String>,
    pub formatter: Option<String>,
    #[serde(default)]
    pub accesslog: AccessLogConfig,
    pub fields: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AccessLogConfig {
    #[serde(default, deserialize_with = "lenient::bool")]
    pub disabled: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StorageConfig {
    pub filesystem: Option<FilesystemConfig>,
    #[serde(default, deserialize_with = "lenient::present")]
    pub inmemory: Option<Value>,
    #[serde(default, deserialize_with = "lenient::present")]
    pub s3: Option<Value>,
    #[serde(default)]
    pub delete: DeleteConfig,
    #[serde(default)]
    pub maintenance: MaintenanceConfig,
    pub cache: Option<Value>,
    pub redirect: Option<Value>,
    pub tag: Option<Value>,
    /// Other drivers distribution has (azure, gcs, swift, ...): reported as unsupported.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MaintenanceConfig {
    #[serde(default)]
    pub uploadpurging: UploadPurgingConfig,
    /// Dockyard extension: online garbage collection.
    #[serde(default)]
    pub gc: gc::GcConfig,
    #[serde(default)]
    pub readonly: ReadOnlyConfig,
}

/// Removal of abandoned upload sessions; distribution's defaults apply to missing keys.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UploadPurgingConfig {
    #[serde(default, deserialize_with = "lenient::bool_opt")]
    pub enabled: Option<bool>,
    pub age: Option<String>,
    pub interval: Option<String>,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub dryrun: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReadOnlyConfig {
    #[serde(default, deserialize_with = "lenient::bool")]
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct FilesystemConfig {
    pub rootdirectory: Option<PathBuf>,
    pub maxthreads: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DeleteConfig {
    #[serde(default, deserialize_with = "lenient::bool")]
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HttpConfig {
    pub addr: Option<String>,
    pub net: Option<String>,
    pub prefix: Option<String>,
    pub host: Option<String>,
    pub secret: Option<String>,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub relativeurls: bool,
    pub draintimeout: Option<String>,
    /// Dockyard extension: open connections at most (default 10000).
    #[serde(default, deserialize_with = "lenient::u64_opt")]
    pub maxconnections: Option<u64>,
    /// Dockyard extension: connection timeouts.
    #[serde(default)]
    pub timeouts: HttpTimeouts,
    pub tls: Option<TlsConfig>,
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    /// registry:2's debug server: `addr`, and `prometheus.enabled` / `prometheus.path`.
    #[serde(default)]
    pub debug: DebugConfig,
    pub http2: Option<Value>,
    pub h2c: Option<Value>,
}

/// `http.debug`: a second listener for metrics, as registry:2 has it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DebugConfig {
    pub addr: Option<String>,
    #[serde(default)]
    pub prometheus: PrometheusConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PrometheusConfig {
    #[serde(default, deserialize_with = "lenient::bool")]
    pub enabled: bool,
    pub path: Option<String>,
}

/// `http.timeouts`: Go durations (`30s`, `2m`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HttpTimeouts {
    /// From a connection's start, or a request's first byte, to its last header (default 30s).
    pub readheader: Option<String>,
    /// Between requests on a kept-alive connection, and without a byte moving during one
    /// (default 2m).
    pub idle: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TlsConfig {
    pub certificate: Option<PathBuf>,
    pub key: Option<PathBuf>,
    #[serde(default, deserialize_with = "lenient::path_list")]
    pub clientcas: Vec<PathBuf>,
    pub minimumtls: Option<String>,
    pub letsencrypt: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthConfig {
    pub htpasswd: Option<HtpasswdConfig>,
    pub token: Option<Value>,
    pub silly: Option<Value>,
    /// Dockyard extension: repository patterns anonymous callers may pull.
    #[serde(default, deserialize_with = "lenient::string_list")]
    pub anonymouspull: Vec<String>,
    /// Dockyard extension: who may pull, push and delete what; absent = every user everything.
    pub access: Option<Vec<crate::auth::AccessRule>>,
    /// Dockyard extension: users who may only pull, whatever `access` grants.
    #[serde(default, deserialize_with = "lenient::string_list")]
    pub pullonly: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HtpasswdConfig {
    pub realm: Option<String>,
    pub path: Option<PathBuf>,
}

/// `proxy`: registry:2's single upstream (`remoteurl`, `username`, `password`, `ttl`), or
/// Dockyard's list of `upstreams` routed by host.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProxyConfig {
    pub remoteurl: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ttl: Option<String>,
    /// Dockyard extension: several upstreams, routed by `?ns=` or a `/v2/<host>/` prefix.
    pub upstreams: Option<Vec<UpstreamConfig>>,
    /// Dockyard extension: how long a tag is trusted before it is checked upstream again.
    pub freshness: Option<String>,
    /// Dockyard extension: the cache's largest size (`50GiB`, `500MB`, or bytes); past it
    /// the least recently used content is evicted.
    pub maxsize: Option<Value>,
}

/// One upstream of a mirror (a Dockyard extension).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UpstreamConfig {
    /// The registry host clients name: `docker.io`, `ghcr.io`, `registry.example.com:5000`.
    pub host: String,
    /// Endpoints to try in order; default `https://<host>` (`https://registry-1.docker.io`
    /// for docker.io).
    #[serde(default, deserialize_with = "lenient::string_list")]
    pub urls: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// A PEM file of CAs to trust for this upstream, besides the system's.
    pub ca: Option<PathBuf>,
    /// Skip certificate verification (a lab upstream with a self-signed certificate).
    #[serde(default, deserialize_with = "lenient::bool")]
    pub insecure: bool,
    /// Requests without `?ns=` or a host prefix go here (docker's `registry-mirrors`).
    #[serde(default, deserialize_with = "lenient::bool")]
    pub default: bool,
}

/// `ui`: the web UI served at `/` beside the API (`REGISTRY_UI_ENABLED=false` turns it off).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UiConfig {
    #[serde(default, deserialize_with = "lenient::bool_opt")]
    pub enabled: Option<bool>,
}

impl UiConfig {
    /// On unless turned off.
    pub fn enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ValidationConfig {
    #[serde(default)]
    pub manifests: ManifestValidation,
    pub disabled: Option<Value>,
    pub enabled: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ManifestValidation {
    /// Dockyard extension: the largest manifest accepted, in bytes (default 4 MiB).
    #[serde(default, deserialize_with = "lenient::u64_opt")]
    pub maxsize: Option<u64>,
    pub urls: Option<Value>,
    pub indexes: Option<Value>,
}

/// Which storage backend the configuration selects.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageKind {
    Filesystem(PathBuf),
    InMemory,
    S3(Box<crate::storage::s3::S3Options>),
}

/// A loaded configuration and the warnings it produced.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    /// Loads `path` (if any) and applies `REGISTRY_*` overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })?,
            None => String::new(),
        };
        Config::parse(&text, env)
    }

    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, ConfigError> {
        let mut root: Value = if text.trim().is_empty() {
            Value::Mapping(Mapping::new())
        } else {
            serde_yaml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?
        };
        if !root.is_mapping() {
            return Err(ConfigError::Invalid(
                "the configuration must be a YAML mapping".into(),
            ));
        }
        let mut overrides: Vec<_> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("REGISTRY_"))
            .collect();
        // Shorter keys first, so REGISTRY_STORAGE=s3 applies before REGISTRY_STORAGE_S3_BUCKET.
        overrides.sort_by_key(|(k, _)| k.len());
        for (key, value) in overrides {
            apply_env(&mut root, &key, value);
        }
        let mut warnings = Vec::new();
        let config: Config = serde_ignored::deserialize(root, |path| {
            warnings.push(format!("unknown configuration key {path}, ignored"));
        })
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        warnings.extend(config.unsupported_warnings());
        Ok(Loaded { config, warnings })
    }

    fn unsupported_warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = self
            .ignored
            .keys()
            .map(|k| match k.as_str() {
                "notifications" | "redis" | "health" | "reporting" | "middleware"
                | "compatibility" | "loglevel" | "catalog" => {
                    format!("configuration section {k} is not supported by Dockyard, ignored")
                }
                other => format!("unknown configuration key {other}, ignored"),
            })
            .collect();
        let s = &self.storage;
        if let Some(Ok((_, s3))) = s.s3.as_ref().map(s3::parse) {
            w.extend(s3);
        }
        for (key, set) in [("cache", s.cache.is_some())] {
            if set {
                w.push(format!(
                    "storage.{key} is not supported by Dockyard, ignored"
                ));
            }
        }
        if self
            .http
            .prefix
            .as_deref()
            .is_some_and(|p| !p.is_empty() && p != "/")
        {
            w.push("http.prefix is not supported by Dockyard, ignored".into());
        }
        w
    }

    /// The selected storage backend; exactly one may be configured.
    pub fn storage_kind(&self, default_root: &Path) -> Result<StorageKind, ConfigError> {
        let s = &self.storage;
        let mut chosen: Vec<&str> = Vec::new();
        if s.filesystem.is_some() {
            chosen.push("filesystem");
        }
        if s.inmemory.is_some() {
            chosen.push("inmemory");
        }
        if s.s3.is_some() {
            chosen.push("s3");
        }
        chosen.extend(s.other.keys().map(String::as_str));
        match chosen.as_slice() {
            [] => Ok(StorageKind::Filesystem(default_root.to_owned())),
            ["filesystem"] => {
                let root = s.filesystem.as_ref().and_then(|f| f.rootdirectory.clone());
                Ok(StorageKind::Filesystem(
                    root.unwrap_or_else(|| default_root.to_owned()),
                ))
            }
            ["inmemory"] => Ok(StorageKind::InMemory),
            ["s3"] => {
                let value = s.s3.as_ref().expect("chosen because present");
                let (options, _) = s3::parse(value).map_err(ConfigError::Invalid)?;
                Ok(StorageKind::S3(Box::new(options)))
            }
            [other] => Err(ConfigError::Invalid(format!(
                "storage driver {other:?} is not supported (supported: filesystem, inmemory, s3)"
            ))),
            many => Err(ConfigError::Invalid(format!(
                "more than one storage driver configured: {}",
                many.join(", ")
            ))),
        }
    }

    /// Whether blob GETs are redirected to the storage's own URLs (registry:2 does unless
    /// `storage.redirect.disable`; only object storage has such URLs).
    pub fn redirect_enabled(&self) -> bool {
        let disable = self
            .storage
            .redirect
            .as_ref()
            .and_then(|r| r.get("disable"))
            .map(|v| match v {
                Value::Bool(b) => *b,
                Value::String(s) => {
                    matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "yes" | "1")
                }
                _ => false,
            });
        !disable.unwrap_or(false)
    }

    /// The address to listen on; Go-style `:5000` means every interface.
    pub fn listen_addr(&self) -> String {
        match self.http.addr.as_deref().map(str::trim) {
            None | Some("") => "0.0.0.0:5000".to_owned(),
            Some(a) => socket_addr(a),
        }
    }

    /// Connection cap and timeouts, from `http.maxconnections` and `http.timeouts`.
    pub fn connection_limits(&self) -> Result<crate::server::Limits, ConfigError> {
        let defaults = crate::server::Limits::default();
        let duration = |key: &str, value: &Option<String>, default: Duration| match value {
            None => Ok(default),
            Some(text) => parse_go_duration(text)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "http.timeouts.{key}: {text:?} is not a duration like 30s or 2m"
                    ))
                }),
        };
        let max_connections = match self.http.maxconnections {
            None => defaults.max_connections,
            Some(0) => {
                return Err(ConfigError::Invalid(
                    "http.maxconnections must be at least 1".into(),
                ));
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let t = &self.http.timeouts;
        Ok(crate::server::Limits {
            max_connections,
            timeouts: crate::server::Timeouts {
                header: duration("readheader", &t.readheader, defaults.timeouts.header)?,
                idle: duration("idle", &t.idle, defaults.timeouts.idle)?,
            },
        })
    }

    pub fn max_manifest_size(&self) -> u64 {
        self.validation.manifests.maxsize.unwrap_or(4 << 20)
    }
}

/// A Go listen address as a socket address: `:5000` means every interface.
pub fn socket_addr(addr: &str) -> String {
    let addr = addr.trim();
    if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_owned()
    }
}

/// Parses Go durations such as `30s`, `5m`, `1h30m`, `250ms`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        total += Duration::from_secs_f64(value * secs);
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// What upload purging does once resolved against distribution's defaults
/// (enabled, sessions idle for 168h, checked every 24h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadPurging {
    pub age: Duration,
    pub interval: Duration,
    pub dry_run: bool,
}

impl UploadPurgingConfig {
    pub fn resolve(&self) -> Result<Option<UploadPurging>, ConfigError> {
        if self.enabled == Some(false) {
            return Ok(None);
        }
        let duration = |key: &str, v: &Option<String>, default: u64| {
            match v {
            None => Ok(Duration::from_secs(default)),
            Some(text) => parse_go_duration(text)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| ConfigError::Invalid(format!("storage.maintenance.uploadpurging.{key}: {text:?} is not a duration like 168h"))),
        }
        };
        Ok(Some(UploadPurging {
            age: duration("age", &self.age, 168 * 3600)?,
            interval: duration("interval", &self.interval, 24 * 3600)?,
            dry_run: self.dryrun,
        }))
    }
}

const STORAGE_DRIVERS: &[&str] = &[
    "filesystem",
    "inmemory",
    "s3",
    "azure",
    "gcs",
    "swift",
    "oss",
];
const AUTH_PROVIDERS: &[&str] = &["htpasswd", "token", "silly"];

/// Applies one `REGISTRY_A_B_C=value` override to the config tree (`a.b.c = value`).
fn apply_env(root: &mut Value, key: &str, value: String) {
    let path: Vec<String> = key["REGISTRY_".len()..]
        .split('_')
        .map(str::to_ascii_lowercase)
        .collect();
    if path.iter().any(String::is_empty) {
        return;
    }
    // REGISTRY_STORAGE=s3 / REGISTRY_AUTH=htpasswd select the driver or provider.
    if let [section] = path.as_slice() {
        let choices = match section.as_str() {
            "storage" => STORAGE_DRIVERS,
            "auth" => AUTH_PROVIDERS,
            _ => &[][..],
        };
        if choices.contains(&value.as_str()) {
            if let Value::Mapping(map) = child(root, section) {
                let kept = map.get(value.as_str()).filter(|v| v.is_mapping()).cloned();
                map.retain(|k, _| !k.as_str().is_some_and(|k| choices.contains(&k)));
                map.insert(
                    Value::from(value.clone()),
                    kept.unwrap_or(Value::Mapping(Mapping::new())),
                );
            }
            return;
        }
    }
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = root;
    for p in parents {
        node = child(node, p);
    }
    if let Value::Mapping(m) = node {
        m.insert(Value::from(last.clone()), Value::from(value));
    }
}

/// The value under `key` in `node`, made a mapping if it was not one (as distribution
/// replaces a scalar when an override addresses a key below it).
fn child<'a>(node: &'a mut Value, key: &str) -> &'a mut Value {
    if !node.is_mapping() {
        *node = Value::Mapping(Mapping::new());
    }
    match node {
        Value::Mapping(m) => {
            let slot = m.entry(Value::from(key)).or_insert(Value::Null);
            if !slot.is_mapping() {
                *slot = Value::Mapping(Mapping::new());
            }
            slot
        }
        other => other,
    }
}

#[cfg(test)]
mod tests;
