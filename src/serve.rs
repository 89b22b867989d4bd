//! The `serve` role: turns a configuration into a storage driver, the content layer and
//! the HTTP router, listens, and shuts down gracefully on SIGTERM/SIGINT.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{AuthSetupError, Authenticator, Policy};
use crate::config::{Config, ConfigError, StorageKind, UploadPurging};
use crate::content::{Content, ContentOptions};
use crate::metrics::GcMetrics;
use crate::registry::metrics::HttpMetrics;
use crate::registry::{self, AppState, http::UrlBase};
use crate::storage::metered::{Metered, StorageMetrics};
use crate::storage::{Driver, fs::FsDriver, memory::MemoryDriver, s3::S3Driver};
use crate::tls::{Tls, TlsError, TlsSettings};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot use storage directory {path}: {source}")]
    StorageRoot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "storage directory {path} is not writable by this process (uid {uid}): {source}. If it is a \
         mounted directory, give it to that user (chown -R {uid}:{uid} DIR) or use a named volume; \
         to serve it read-only, set storage.maintenance.readonly.enabled"
    )]
    StorageNotWritable {
        path: PathBuf,
        uid: u32,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error(
        "{0} is configured but not supported by this build of Dockyard yet; remove it or use registry:2"
    )]
    Unsupported(&'static str),
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// Where images are stored when the configuration names no directory: `/var/lib/registry`
/// for root (as the registry:2 image), else `$XDG_DATA_HOME/dockyard/registry`.
pub fn default_root() -> PathBuf {
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if is_root {
        return PathBuf::from("/var/lib/registry");
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("dockyard/registry")
}

/// How long in-flight requests may take to finish after a shutdown signal.
fn drain_timeout(config: &Config) -> Duration {
    let parsed = config
        .http
        .draintimeout
        .as_deref()
        .and_then(crate::config::parse_go_duration);
    parsed.unwrap_or(Duration::from_secs(10))
}

/// The authenticator `auth` asks for, if any.
fn build_auth(config: &Config) -> Result<Option<Arc<Authenticator>>, ServeError> {
    let Some(auth) = &config.auth else {
        return Ok(None);
    };
    if auth.token.is_some() || auth.silly.is_some() {
        return Err(ServeError::Unsupported(
            "auth.token / auth.silly (use auth.htpasswd)",
        ));
    }
    let Some(htpasswd) = &auth.htpasswd else {
        if auth.access.is_some() || !auth.anonymouspull.is_empty() || !auth.pullonly.is_empty() {
            return Err(ConfigError::Invalid(
                "auth.access, auth.anonymouspull and auth.pullonly need auth.htpasswd".into(),
            )
            .into());
        }
        return Ok(None);
    };
    let path = htpasswd.path.as_deref().ok_or_else(|| {
        ConfigError::Invalid("auth.htpasswd.path is required (REGISTRY_AUTH_HTPASSWD_PATH)".into())
    })?;
    let realm = htpasswd
        .realm
        .clone()
        .unwrap_or_else(|| "Dockyard Registry".to_owned());
    let policy = Policy {
        anonymous_pull: auth.anonymouspull.clone(),
        rules: auth.access.clone(),
        pull_only: auth.pullonly.clone(),
    };
    Ok(Some(Arc::new(Authenticator::load(realm, path, policy)?)))
}

/// What [`build_state`] makes of a configuration.
pub struct Built {
    pub state: AppState,
    /// The local content, for maintenance.
    pub content: Content,
    /// Where content is stored, for the startup line.
    pub location: String,
    /// The filesystem driver, when that is the backend, for its maintenance.
    pub fs: Option<FsDriver>,
    /// Metrics for `http.debug`'s `/metrics`.
    pub metrics: prometheus_client::registry::Registry,
    /// The HTTP API's, when `/metrics` is served.
    pub http_metrics: Option<Arc<HttpMetrics>>,
    /// For the garbage collector.
    pub gc_metrics: GcMetrics,
    /// For the repository name index.
    pub index_metrics: crate::metrics::IndexMetrics,
    /// How the name index is kept current.
    pub catalog: crate::config::catalog::CatalogSchedule,
    /// The pull-through cache, when configured, for its eviction.
    pub mirror: Option<Arc<crate::proxy::Mirror>>,
}

/// Temp files of atomic writes older than this are leftovers of a crash.
const STALE_TEMP_AGE: Duration = Duration::from_secs(600);

/// Builds the application state from a configuration (creating the storage root), with what
/// the server needs around it.
pub fn build_state(config: &Config) -> Result<Built, ServeError> {
    let mirror =
        crate::proxy::Settings::from_config(config.proxy.as_ref()).map_err(ConfigError::Invalid)?;
    let mut object_store = false;
    let (driver, location, fs): (Arc<dyn Driver>, String, _) =
        match config.storage_kind(&default_root())? {
            StorageKind::Filesystem(root) => {
                std::fs::create_dir_all(&root).map_err(|source| ServeError::StorageRoot {
                    path: root.clone(),
                    source,
                })?;
                let location = root.display().to_string();
                let fs = FsDriver::new(root);
                if !config.storage.maintenance.readonly.enabled {
                    // Refused here, rather than as a 500 on every push.
                    fs.check_writable()
                        .map_err(|source| ServeError::StorageNotWritable {
                            path: fs.root().to_owned(),
                            // SAFETY: geteuid has no preconditions.
                            uid: unsafe { libc::geteuid() },
                            source,
                        })?;
                }
                (Arc::new(fs.clone()), location, Some(fs))
            }
            StorageKind::InMemory => (
                Arc::new(MemoryDriver::new()),
                "memory (lost on exit)".to_owned(),
                None,
            ),
            StorageKind::S3(options) => {
                object_store = true;
                let driver = S3Driver::new(&options).map_err(ConfigError::Invalid)?;
                let location = format!(
                    "s3://{}/{} ({})",
                    options.bucket,
                    options.root,
                    options.endpoint_url().as_deref().unwrap_or("AWS")
                );
                (Arc::new(driver), location, None)
            }
        };
    let grace = config.storage.maintenance.gc.grace()?;
    let options = ContentOptions {
        delete_enabled: config.storage.delete.enabled,
        max_manifest_size: config.max_manifest_size(),
        read_only: config.storage.maintenance.readonly.enabled,
        protect_after: crate::config::gc::protect_after(grace),
        redirect: config.redirect_enabled(),
    };
    let auth = build_auth(config)?;
    let urls = UrlBase {
        host: config.http.host.clone(),
        relative: config.http.relativeurls,
        tls: TlsSettings::from_config(&config.http)?.is_some(),
    };
    let mut metrics = prometheus_client::registry::Registry::default();
    let driver = Arc::new(Metered::new(driver, &StorageMetrics::new(&mut metrics)));
    let http_metrics = prometheus_served(config).then(|| Arc::new(HttpMetrics::new(&mut metrics)));
    let gc_metrics = GcMetrics::new(&mut metrics);
    let index_metrics = crate::metrics::IndexMetrics::new(&mut metrics);
    let catalog = config.catalog.resolve(object_store)?;
    let content = Content::new(driver, options);
    let mut maintained = None;
    let store: Arc<dyn crate::content::Store> = match mirror {
        Some(settings) => {
            let proxy_metrics = Arc::new(crate::proxy::metrics::ProxyMetrics::default());
            proxy_metrics.register(&mut metrics);
            let mirror = crate::proxy::Mirror::new(content.clone(), settings, proxy_metrics)
                .map_err(ConfigError::Invalid)?;
            let mirror = Arc::new(mirror);
            maintained = Some(mirror.clone());
            mirror
        }
        None => Arc::new(content.clone()),
    };
    Ok(Built {
        state: AppState { store, urls, auth },
        content,
        location,
        fs,
        metrics,
        http_metrics,
        gc_metrics,
        index_metrics,
        catalog,
        mirror: maintained,
    })
}

/// `dockyard garbage-collect`: one collection over the configured storage, under the
/// collector's lock.
pub async fn garbage_collect(
    config: &Config,
    options: &crate::content::GcOptions,
) -> anyhow::Result<crate::content::GcReport> {
    let built = build_state(config)?;
    if built.mirror.is_some() {
        anyhow::bail!(
            "this configuration is a pull-through cache (proxy.remoteurl): its cache is evicted by size and age, not garbage-collected"
        );
    }
    match crate::gc::collect_once(&built.content, options, &crate::gc::holder()).await? {
        crate::gc::Outcome::Collected(report) => Ok(report),
        crate::gc::Outcome::Busy(state) => anyhow::bail!(
            "another garbage collection is running ({}; its lock lasts until {} unless renewed); try again later",
            state.holder,
            crate::content::uploads::rfc3339(
                std::time::UNIX_EPOCH + Duration::from_secs(state.expires)
            )
        ),
    }
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let Built {
        state,
        content,
        location,
        fs,
        metrics,
        http_metrics,
        gc_metrics,
        index_metrics,
        catalog,
        mirror,
    } = build_state(&config)?;
    tokio::spawn(
        content
            .clone()
            .maintain_names(catalog.refresh, catalog.rescan, move |index| {
                index_metrics.observe(index)
            }),
    );
    if let Some(mirror) = mirror.clone() {
        tokio::spawn(mirror.maintain());
    }
    if let Some(debug) = debug_server(&config, metrics).await? {
        tokio::spawn(debug);
    }
    if let Some(fs) = fs {
        tokio::spawn(remove_stale_temp_files(fs));
    }
    if let Some(auth) = &state.auth {
        tokio::spawn(auth.clone().watch_file());
    }
    let tls = TlsSettings::from_config(&config.http)?
        .map(Tls::start)
        .transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let addr = config.listen_addr();
    let listener = bind(&addr).await?;
    let local = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
    tracing::info!(
        listen = %local,
        storage = content.driver_name(),
        location = %location,
        delete_enabled = config.storage.delete.enabled,
        "dockyard registry listening on {scheme}://{local}, storing in {location}"
    );
    if let Some(purging) = config.storage.maintenance.uploadpurging.resolve()?
        && !config.storage.maintenance.readonly.enabled
    {
        tokio::spawn(purge_uploads(content.clone(), purging));
    }
    if let Some(schedule) = config.storage.maintenance.gc.resolve()? {
        if config.storage.maintenance.readonly.enabled || config.proxy.is_some() {
            tracing::warn!(
                "storage.maintenance.gc is ignored on a read-only registry or a pull-through cache (the cache evicts instead)"
            );
        } else {
            let dry_run = schedule.dry_run;
            let observe = move |result: &str, report: Option<&crate::content::GcReport>| {
                gc_metrics.run(result);
                if let Some(report) = report.filter(|_| !dry_run) {
                    gc_metrics.freed(report.bytes_freed, report.blobs_deleted.len() as u64);
                }
            };
            tokio::spawn(crate::gc::run_scheduled(content.clone(), schedule, observe));
        }
    }
    let drain = drain_timeout(&config);
    let mut limits = config.connection_limits()?;
    limits.max_connections = limits.max_connections.min(connection_ceiling());
    let (signal_tx, signal_rx) = tokio::sync::oneshot::channel::<()>();
    let pages = web_ui(&config, &content, mirror, &state, tls.is_some());
    let mut app = registry::router_with_pages(state, pages);
    if let Some(http_metrics) = http_metrics {
        app = registry::metrics::instrument(app, http_metrics);
    }
    let stop = async move {
        let _ = signal_rx.await;
    };
    let mut server: Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> =
        Box::pin(crate::server::serve(listener, tls, app, limits, stop));
    tokio::select! {
        result = &mut server => return result.map_err(ServeError::Serve),
        () = shutdown => {}
    }
    tracing::info!(
        drain_secs = drain.as_secs_f64(),
        "shutting down, draining in-flight requests"
    );
    let _ = signal_tx.send(());
    match tokio::time::timeout(drain, server).await {
        Ok(result) => result.map_err(ServeError::Serve),
        Err(_) => {
            tracing::warn!("drain timeout reached, closing remaining connections");
            Ok(())
        }
    }
}

/// The web UI's routes when `ui.enabled` (else none: `/` is the API's 404).
fn web_ui(
    config: &Config,
    content: &Content,
    mirror: Option<Arc<crate::proxy::Mirror>>,
    state: &AppState,
    tls: bool,
) -> axum::Router {
    if !config.ui.enabled() {
        return axum::Router::new();
    }
    let secret = config.http.secret.as_deref();
    let ui = crate::ui::UiState::new(content.clone(), mirror, state.auth.clone(), secret, tls);
    crate::ui::router(ui)
}

async fn bind(addr: &str) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen {
            addr: addr.to_owned(),
            source,
        })
}

/// Whether `http.debug` serves `/metrics`.
fn prometheus_served(config: &Config) -> bool {
    let debug = &config.http.debug;
    debug.prometheus.enabled && debug.addr.as_deref().is_some_and(|a| !a.trim().is_empty())
}

/// registry:2's `http.debug` listener with `/metrics` (when `prometheus.enabled`).
async fn debug_server(
    config: &Config,
    metrics: prometheus_client::registry::Registry,
) -> Result<Option<impl Future<Output = ()> + use<>>, ServeError> {
    let debug = &config.http.debug;
    let Some(addr) = debug.addr.as_deref().filter(|a| !a.trim().is_empty()) else {
        return Ok(None);
    };
    let addr = crate::config::socket_addr(addr);
    let path = debug
        .prometheus
        .path
        .clone()
        .unwrap_or_else(|| "/metrics".to_owned());
    let metrics = Arc::new(metrics);
    let mut app = axum::Router::new().route("/debug/health", axum::routing::get(|| async { "ok" }));
    if debug.prometheus.enabled {
        app = app.route(
            &path,
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move {
                    let mut text = String::new();
                    let _ = prometheus_client::encoding::text::encode(&mut text, &metrics);
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        );
    }
    let listener = bind(&addr).await?;
    let enabled = debug.prometheus.enabled;
    tracing::info!(addr = %addr, metrics = enabled, "debug server listening");
    Ok(Some(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "debug server stopped");
        }
    }))
}

/// How many connections the process can hold: raises the open-file limit to its hard
/// maximum (as Go does at startup) and keeps a quarter of it for files.
fn connection_ceiling() -> usize {
    #[cfg(target_os = "linux")]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed by pointer.
        let soft = unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return usize::MAX;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit.rlim_cur = limit.rlim_max;
                }
            }
            limit.rlim_cur
        };
        usize::try_from(soft / 4 * 3).unwrap_or(usize::MAX).max(64)
    }
    #[cfg(not(target_os = "linux"))]
    usize::MAX
}

/// Removes what crashed atomic writes left in the filesystem driver's staging directory:
/// at startup, then every [`STALE_TEMP_AGE`].
async fn remove_stale_temp_files(fs: FsDriver) {
    let mut ticks = tokio::time::interval(STALE_TEMP_AGE);
    loop {
        ticks.tick().await;
        let driver = fs.clone();
        let removed =
            tokio::task::spawn_blocking(move || driver.remove_stale_temp_files(STALE_TEMP_AGE))
                .await;
        match removed {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(files = n, "removed temp files left by a crash"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot clean the storage temp directory"),
            Err(e) => tracing::warn!(error = %e, "temp file cleanup failed"),
        }
    }
}

/// Removes abandoned upload sessions periodically, first shortly after start.
async fn purge_uploads(content: Content, purging: UploadPurging) {
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(60),
        purging.interval,
    );
    loop {
        ticks.tick().await;
        match content.purge_uploads(purging.age, purging.dry_run).await {
            Ok(0) => {}
            Ok(n) if purging.dry_run => tracing::info!(
                sessions = n,
                "upload purging (dry run): would remove idle upload sessions"
            ),
            Ok(n) => tracing::info!(sessions = n, "upload purging: removed idle upload sessions"),
            Err(e) => {
                tracing::warn!(error = %e, "upload purging failed; will retry at the next interval")
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
