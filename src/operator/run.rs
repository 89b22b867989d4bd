//! The `operator` role at run time: the Kubernetes client, the metrics/health server, leader
//! election and the controller's lifecycle. `cli` calls [`run`]; nothing else does.
//!
//! With leader election on, one instance holds the Lease (`kube-lease-manager`) and runs the
//! controller; the others wait as ready standbys. Losing the lease stops the controller
//! gracefully (in-flight reconciles finish, no new ones start) and the instance becomes a
//! standby again; winning it back starts a fresh controller. On SIGTERM/SIGINT the instance
//! stops the controller, releases the Lease (so a standby takes over when the released lock
//! is next checked, at most one lease duration later) and closes the HTTP server last.

mod controller;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use kube::runtime::events::Reporter;
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseParams};
use tokio_util::sync::CancellationToken;

use super::health::{self, Health, Role};
use super::metrics::Metrics;
use super::{Context, MANAGER};

/// Everything the operator needs from its command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Image of the registry workload (normally the operator's own image).
    pub image: String,
    /// Namespace to watch; `None` watches all namespaces.
    pub namespace: Option<String>,
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    pub metrics_addr: SocketAddr,
    /// This instance's name: the Lease holder identity and the Events' reporting instance.
    pub identity: String,
    /// `None` runs the controller unconditionally (a single replica).
    pub leader_election: Option<LeaderElection>,
    /// The operator's own namespace, where node plans and node reports live.
    pub node_namespace: String,
}

/// Where the Lease lives and how long a holder keeps it without renewing.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    pub lease_name: String,
    pub lease_namespace: String,
    /// How long the lock stays valid after the holder's last renewal; also the longest a
    /// standby waits before taking over from a holder that vanished.
    pub duration_seconds: u64,
    /// The holder renews this long before the lock would expire.
    pub grace_seconds: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create the Kubernetes client (KUBECONFIG or in-cluster config): {0}")]
    Client(#[source] kube::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "the lease grace period ({grace}s) must be above 0 and below the lease duration ({duration}s)"
    )]
    LeaseTiming { duration: u64, grace: u64 },
    #[error("leader election on Lease {namespace}/{name}: {source}")]
    Lease {
        namespace: String,
        name: String,
        source: kube_lease_manager::LeaseManagerError,
    },
    #[error("the leader-election task stopped unexpectedly")]
    LeaseTaskEnded,
    #[error("metrics server: {0}")]
    Serve(std::io::Error),
}

/// This instance's identity: the pod name when the chart passes it (`POD_NAME`), else the
/// host name plus a random suffix, so two processes on one host never share a Lease identity.
pub fn identity(pod_name: Option<String>) -> String {
    if let Some(name) = pod_name.filter(|n| !n.trim().is_empty()) {
        return name;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "dockyard-operator".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}_{}", &suffix[..8])
}

/// Runs the operator until `shutdown` resolves, then stops the controller, releases the
/// Lease and stops the HTTP server.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let Settings {
        image,
        namespace,
        metrics_addr,
        identity,
        leader_election,
        node_namespace,
    } = settings;
    if let Some(election) = &leader_election
        && (election.grace_seconds == 0 || election.grace_seconds >= election.duration_seconds)
    {
        return Err(RunError::LeaseTiming {
            duration: election.duration_seconds,
            grace: election.grace_seconds,
        });
    }

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let health = Arc::new(Health::new(&mut registry));
    let listener = tokio::net::TcpListener::bind(metrics_addr)
        .await
        .map_err(|source| RunError::Listen {
            addr: metrics_addr,
            source,
        })?;
    let http_stop = CancellationToken::new();
    let http = tokio::spawn(
        axum::serve(listener, health::router(health.clone(), Arc::new(registry)))
            .with_graceful_shutdown(http_stop.clone().cancelled_owned())
            .into_future(),
    );
    tracing::info!(addr = %metrics_addr, %identity, namespace = namespace.as_deref().unwrap_or("(all)"), "operator starting");

    let stopping = CancellationToken::new();
    tokio::spawn({
        let (stopping, health) = (stopping.clone(), health.clone());
        async move {
            shutdown.await;
            tracing::info!("shutdown requested");
            health.set(Role::Stopping);
            stopping.cancel();
        }
    });

    let outcome = match kube::Client::try_default().await {
        Err(e) => Err(RunError::Client(e)),
        Ok(client) => {
            let reporter = Reporter {
                controller: MANAGER.into(),
                instance: Some(identity.clone()),
            };
            let ctx = Arc::new(Context::new(
                client.clone(),
                image,
                metrics,
                reporter,
                node_namespace,
            ));
            let run = Running {
                ctx,
                namespace,
                health: health.clone(),
                stopping,
            };
            match leader_election {
                None => {
                    run.controller(run.stopping.clone()).await;
                    Ok(())
                }
                Some(election) => run.lead(client, election, identity).await,
            }
        }
    };

    health.set(Role::Stopping);
    http_stop.cancel();
    let served = match http.await {
        Ok(served) => served.map_err(RunError::Serve),
        Err(join) => Err(RunError::Serve(std::io::Error::other(join))),
    };
    tracing::info!("operator stopped");
    outcome.and(served)
}

/// What the controller lifecycle shares between leadership terms.
struct Running {
    ctx: Arc<Context>,
    namespace: Option<String>,
    health: Arc<Health>,
    /// Cancelled once shutdown was requested.
    stopping: CancellationToken,
}

impl Running {
    /// Runs one controller until `stop` is cancelled; in-flight reconciles finish first.
    async fn controller(&self, stop: CancellationToken) {
        controller::run(
            self.ctx.clone(),
            self.namespace.as_deref(),
            self.health.clone(),
            stop,
        )
        .await;
    }

    /// Waits for the Lease, runs the controller while holding it, and releases it on shutdown.
    async fn lead(
        &self,
        client: kube::Client,
        election: LeaderElection,
        identity: String,
    ) -> Result<(), RunError> {
        let LeaderElection {
            lease_name,
            lease_namespace,
            duration_seconds,
            grace_seconds,
        } = election;
        let lease_error = |source| RunError::Lease {
            namespace: lease_namespace.clone(),
            name: lease_name.clone(),
            source,
        };
        let params = LeaseParams::new(identity, duration_seconds, grace_seconds);
        let manager = tokio::select! {
            manager = LeaseManager::new(client, &lease_name, &lease_namespace, params, LeaseCreateMode::AutoCreate) => manager.map_err(lease_error)?,
            () = self.stopping.cancelled() => return Ok(()),
        };
        let (mut leading, lease_task) = manager.watch().await;
        tracing::info!(lease = %lease_name, namespace = %lease_namespace, "waiting for the lease");
        self.health.set(Role::Standby);

        let mut outcome = Ok(());
        loop {
            tokio::select! {
                changed = leading.wait_for(|leader| *leader) => if changed.is_err() {
                    outcome = Err(RunError::LeaseTaskEnded);
                    break;
                },
                () = self.stopping.cancelled() => break,
            }
            tracing::info!("acquired the lease: starting the controller");
            self.health.set(Role::Starting);
            let term = self.stopping.child_token();
            let watch_loss = tokio::spawn({
                let (mut leading, term) = (leading.clone(), term.clone());
                async move {
                    // Ends on the loss of the lease, or when the lease task is gone.
                    let _ = leading.wait_for(|leader| !*leader).await;
                    term.cancel();
                }
            });
            self.controller(term).await;
            watch_loss.abort();
            if self.stopping.is_cancelled() {
                break;
            }
            tracing::warn!("lost the lease: controller stopped, waiting to lead again");
            self.health.set(Role::Standby);
        }

        // Closing the channel makes the lease task release the Lease (if held) and return.
        self.health.set(Role::Stopping);
        drop(leading);
        match lease_task.await {
            Ok(Ok(_manager)) => tracing::info!("lease released"),
            Ok(Err(e)) if is_gone_or_forbidden(&e) => {
                // The API error's text says "forbidden": keep it out of the info-level log,
                // where it reads like a failure of an uninstall that went as designed.
                tracing::debug!(error = %e, "lease release refused");
                tracing::info!(
                    expires_in_secs = duration_seconds,
                    "the lease was not released (its Role or the Lease is already gone, as during `helm uninstall`); it expires on its own"
                )
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not release the lease; it expires on its own")
            }
            Err(e) => tracing::warn!(error = %e, "the leader-election task failed"),
        }
        outcome
    }
}

/// A release refused because the Lease, or the permission to change it, no longer exists:
/// expected at uninstall, where Helm deletes the Role while the pod is still stopping.
fn is_gone_or_forbidden(error: &kube_lease_manager::LeaseManagerError) -> bool {
    use kube_lease_manager::LeaseManagerError as E;
    match error {
        E::KubeError(kube::Error::Api(status)) => matches!(status.code, 403 | 404),
        E::NonexistentLease(_) => true,
        _ => false,
    }
}
