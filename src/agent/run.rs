//! `dockyard node-agent`: the Kubernetes side of the node agent, one per node (a DaemonSet).
//!
//! It watches the node plans in its namespace (ConfigMaps the operator publishes, see
//! `operator::nodeplan`) and its own Node (labels and taints decide which plans select it),
//! turns the selecting plans into [`Entry`]s and calls [`sync`](super::sync) whenever either
//! changes, and at least every `resync` (so a file someone deleted comes back). It reports
//! in a Lease named after its node: the hash of every plan it carries and what went wrong,
//! renewed as a heartbeat. It reads nothing else, and writes nothing but that Lease.
//!
//! On shutdown it leaves the node's configuration in place: a DaemonSet rollout must not
//! flap every runtime's config, and a mirror that goes away is harmless (runtimes fall back
//! to the upstream). Deleting the resource removes the files.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

use super::{Endpoint, Entry, Layout, Report};
use crate::operator::nodeplan::{
    HASH_ANNOTATION, NodePlan, NodeReport, OwnerReport, PLAN_KEY, PLAN_LABEL, REPORT_ANNOTATION,
    REPORT_LABEL, REPORT_SECONDS, report_name,
};

/// The field manager of the report Lease.
const MANAGER: &str = "dockyard-node-agent";

/// What `dockyard node-agent` runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This node's name (the chart passes `spec.nodeName`).
    pub node: String,
    /// Where plans and reports live (the chart's namespace).
    pub namespace: String,
    pub layout: Layout,
    /// `/healthz`, `/readyz` and `/metrics`.
    pub metrics_addr: SocketAddr,
    /// Sync at least this often, and renew the report.
    pub resync: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot create the Kubernetes client (in-cluster config or KUBECONFIG): {0}")]
    Client(#[source] kube::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The entries of the `plans` that select `node`.
pub fn entries_for(node: &Node, plans: &[NodePlan]) -> Vec<Entry> {
    plans
        .iter()
        .filter(|p| p.selects(node))
        .flat_map(|plan| {
            plan.entries.iter().map(|e| Entry {
                owner: plan.owner.clone(),
                host: e.host.clone(),
                server: e.server.clone(),
                mirror: e.mirror.clone().map(|url| Endpoint {
                    url,
                    insecure: e.plain_http,
                }),
                ca_pem: e.ca_pem.clone(),
                runtimes: e.runtimes.clone(),
                fallback: e.fallback,
            })
        })
        .collect()
}

/// What to report for `report` of the `plans` selecting `node`.
pub fn node_report(node: &Node, plans: &[NodePlan], report: &Report) -> NodeReport {
    let owners = plans
        .iter()
        .filter(|p| p.selects(node))
        .map(|plan| {
            let own = report
                .per_owner
                .get(&plan.owner)
                .cloned()
                .unwrap_or_default();
            (
                plan.owner.clone(),
                OwnerReport {
                    hash: plan.hash(),
                    configured: own.configured,
                    problems: own.problems,
                },
            )
        })
        .collect();
    NodeReport {
        owners,
        problems: report.node_problems.clone(),
        runtimes: Default::default(),
    }
}

/// The plans in `config_maps`. One that does not parse (an operator newer than this agent,
/// during an upgrade) is not taken as withdrawn, which would remove its files from the node:
/// the last version of it that parsed (`last_good`, by ConfigMap name) stays in force.
fn plans(
    config_maps: &[Arc<ConfigMap>],
    last_good: &mut HashMap<String, NodePlan>,
) -> Vec<NodePlan> {
    let names: Vec<String> = config_maps.iter().map(|cm| cm.name_any()).collect();
    last_good.retain(|name, _| names.contains(name));
    let mut plans: Vec<NodePlan> = config_maps
        .iter()
        .filter_map(|cm| {
            let name = cm.name_any();
            let text = cm.data.as_ref()?.get(PLAN_KEY)?;
            match serde_json::from_str::<NodePlan>(text) {
                Ok(mut plan) => {
                    plan.published_hash = cm.annotations().get(HASH_ANNOTATION).cloned();
                    last_good.insert(name, plan.clone());
                    Some(plan)
                }
                Err(e) => {
                    tracing::warn!(config_map = %name, error = %e, "a node plan does not parse (is this agent older than the operator?); keeping the last version that did");
                    last_good.get(&name).cloned()
                }
            }
        })
        .collect();
    plans.sort_by(|a, b| a.owner.cmp(&b.owner));
    plans
}

struct Metrics {
    syncs: Counter,
    failures: Counter,
    configured: Gauge,
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics {
        syncs: Counter::default(),
        failures: Counter::default(),
        configured: Gauge::default(),
    };
    registry.register(
        "dockyard_node_agent_syncs",
        "Syncs of this node's runtime configuration",
        metrics.syncs.clone(),
    );
    registry.register(
        "dockyard_node_agent_sync_failures",
        "Syncs that left a resource unconfigured on this node",
        metrics.failures.clone(),
    );
    registry.register(
        "dockyard_node_agent_configured_owners",
        "Resources whose configuration this node carries",
        metrics.configured.clone(),
    );
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(settings.metrics_addr)
        .await
        .map_err(|source| AgentError::Listen {
            addr: settings.metrics_addr,
            source,
        })?;
    let readiness = {
        let ready = ready.clone();
        move || {
            if ready.load(std::sync::atomic::Ordering::Acquire) {
                (axum::http::StatusCode::OK, "ok: synced\n")
            } else {
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, "starting\n")
            }
        }
    };
    let http = tokio::spawn(
        axum::serve(
            listener,
            crate::health::router(Arc::new(readiness), Arc::new(registry)),
        )
        .into_future(),
    );
    let client = kube::Client::try_default()
        .await
        .map_err(AgentError::Client)?;
    tracing::info!(node = %settings.node, namespace = %settings.namespace, "node agent starting");

    let changed = Arc::new(Notify::new());
    let (plan_store, plan_writer) = reflector::store::<ConfigMap>();
    let plan_api: Api<ConfigMap> = Api::namespaced(client.clone(), &settings.namespace);
    let plan_watch = reflector(
        plan_writer,
        watcher(
            plan_api,
            watcher::Config::default().labels(&format!("{PLAN_LABEL}=true")),
        ),
    )
    .default_backoff()
    .touched_objects();
    let (node_store, node_writer) = reflector::store::<Node>();
    let node_api: Api<Node> = Api::all(client.clone());
    let node_watch = reflector(
        node_writer,
        watcher(
            node_api,
            watcher::Config::default().fields(&format!("metadata.name={}", settings.node)),
        ),
    )
    .default_backoff()
    .touched_objects();
    let watches = {
        let changed = changed.clone();
        tokio::spawn(async move {
            let plan_events = plan_watch.map(|e| e.map(|_| ()).map_err(|e| e.to_string()));
            let node_events = node_watch.map(|e| e.map(|_| ()).map_err(|e| e.to_string()));
            let mut events = std::pin::pin!(futures::stream::select(plan_events, node_events));
            while let Some(event) = events.next().await {
                match event {
                    Ok(()) => changed.notify_one(),
                    Err(e) => tracing::warn!(error = %e, "watch error; retrying"),
                }
            }
        })
    };
    let _ = plan_store.wait_until_ready().await;
    let _ = node_store.wait_until_ready().await;

    let leases: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last: Option<NodeReport> = None;
    let mut last_good = HashMap::new();
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        let Some(node) = node_store.state().into_iter().next() else {
            tracing::warn!(node = %settings.node, "this node is not in the API server yet");
            tokio::select! {
                () = changed.notified() => continue,
                () = tokio::time::sleep(settings.resync) => continue,
                () = &mut shutdown => break,
            }
        };
        let plans = plans(&plan_store.state(), &mut last_good);
        let entries = entries_for(&node, &plans);
        let layout = settings.layout.clone();
        let report = tokio::task::spawn_blocking(move || super::sync(&layout, &entries)).await;
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "the sync task failed");
                Report::default()
            }
        };
        metrics.syncs.inc();
        let next = node_report(&node, &plans, &report);
        let configured = next.owners.values().filter(|o| o.configured).count();
        metrics.configured.set(configured as i64);
        if configured < next.owners.len() {
            metrics.failures.inc();
        }
        if report.changed {
            tracing::info!(
                plans = next.owners.len(),
                configured,
                "node configuration updated"
            );
        }
        for (owner, own) in &next.owners {
            for problem in &own.problems {
                tracing::warn!(%owner, "{problem}");
            }
        }
        let renew_due = last_renewal.elapsed() >= settings.resync;
        if last.as_ref() != Some(&next) || renew_due {
            match write_report(&leases, &settings.node, &next, settings.resync).await {
                Ok(()) => {
                    last = Some(next);
                    last_renewal = tokio::time::Instant::now();
                    ready.store(true, std::sync::atomic::Ordering::Release);
                }
                Err(e) => tracing::warn!(error = %e, "cannot write this node's report"),
            }
        }
        tokio::select! {
            () = changed.notified() => {
                // Plans often change together (a resource and its Service): let them settle.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            () = tokio::time::sleep(settings.resync) => {}
            () = &mut shutdown => break,
        }
    }
    tracing::info!("node agent stopping; the node's configuration stays in place");
    watches.abort();
    http.abort();
    Ok(())
}

/// How long a report stays current: at least [`REPORT_SECONDS`], and three resyncs.
pub fn lease_seconds(resync: Duration) -> i32 {
    let three = resync.as_secs().saturating_mul(3);
    i32::try_from(three).unwrap_or(i32::MAX).max(REPORT_SECONDS)
}

/// Writes `report` to this node's Lease (server-side apply), renewing it.
async fn write_report(
    leases: &Api<Lease>,
    node: &str,
    report: &NodeReport,
    resync: Duration,
) -> Result<(), kube::Error> {
    let now = Timestamp::now();
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(report_name(node)),
            labels: Some(BTreeMap::from([
                (REPORT_LABEL.to_owned(), "true".to_owned()),
                (
                    "app.kubernetes.io/managed-by".to_owned(),
                    "dockyard".to_owned(),
                ),
            ])),
            annotations: Some(BTreeMap::from([(
                REPORT_ANNOTATION.to_owned(),
                serde_json::to_string(report).unwrap_or_default(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.to_owned()),
            // Current for three renewals, however long the resync.
            lease_duration_seconds: Some(lease_seconds(resync)),
            renew_time: Some(MicroTime(now)),
            ..LeaseSpec::default()
        }),
    };
    let mut patch = serde_json::to_value(&lease).unwrap_or_default();
    patch["apiVersion"] = "coordination.k8s.io/v1".into();
    patch["kind"] = "Lease".into();
    leases
        .patch(
            &report_name(node),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_map(name: &str, text: &str) -> Arc<ConfigMap> {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        cm.data = Some([(PLAN_KEY.to_owned(), text.to_owned())].into());
        Arc::new(cm)
    }

    #[test]
    fn a_plan_that_stops_parsing_stays_in_force_until_it_is_withdrawn() {
        let mut last_good = HashMap::new();
        let good = r#"{"owner":"RegistryMirror/ns/m","entries":[{"host":"docker.io","runtimes":["containerd"]}]}"#;
        let newer = r#"{"owner":"RegistryMirror/ns/m","entries":[{"host":"docker.io","runtimes":["wasm"]}]}"#;
        assert_eq!(plans(&[plan_map("p", good)], &mut last_good).len(), 1);
        let kept = plans(&[plan_map("p", newer)], &mut last_good);
        assert_eq!(kept.len(), 1, "the last good version stays");
        assert_eq!(kept[0].entries[0].host, "docker.io");
        assert!(plans(&[], &mut last_good).is_empty(), "withdrawn");
        assert!(
            plans(&[plan_map("p", newer)], &mut last_good).is_empty(),
            "never parsed"
        );
    }

    #[test]
    fn a_report_outlives_three_resyncs() {
        assert_eq!(lease_seconds(Duration::from_secs(10)), REPORT_SECONDS);
        assert_eq!(lease_seconds(Duration::from_secs(120)), 360);
    }
}
