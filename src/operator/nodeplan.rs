//! What the operator and the node agents tell each other through the API server.
//!
//! - **Plans** (operator -> agents): one ConfigMap per resource that asks for node
//!   configuration (a RegistryMirror, a Registry with `nodeTrust`), in the namespace the
//!   operator and the agents run in. It holds a [`NodePlan`]: which nodes, and for each
//!   registry host what to write. Agents only read them. Cross-namespace owner references do
//!   not exist, so the resource carries a finalizer that deletes its plan.
//! - **Reports** (agents -> operator): one Lease per node (`dockyard-node-<node>`), renewed
//!   as a heartbeat, with a [`NodeReport`] in an annotation: for each plan, the hash it
//!   carries and what went wrong. The operator counts a node as configured for a resource
//!   when its Lease is current and reports the plan's hash without problems.
//!
//! Pure: types, names, hashing and the node selection rule.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Node, Toleration};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::crd::{NodeSelection, Runtime};

/// Label on plan ConfigMaps.
pub const PLAN_LABEL: &str = "dockyard.dev/node-plan";
/// Label on report Leases.
pub const REPORT_LABEL: &str = "dockyard.dev/node-report";
/// The plan's key in its ConfigMap.
pub const PLAN_KEY: &str = "plan.json";
/// The report's annotation on its Lease.
pub const REPORT_ANNOTATION: &str = "dockyard.dev/report";
/// Finalizer on resources with a plan.
pub const PLAN_FINALIZER: &str = "dockyard.dev/node-plan";
/// How long a report stays current without renewal.
pub const REPORT_SECONDS: i32 = 90;

/// What a resource asks of the nodes it selects.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodePlan {
    /// `Kind/namespace/name`: marks what the agent writes and keys the reports.
    pub owner: String,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    pub entries: Vec<PlanEntry>,
    /// The hash the operator published with the plan (its ConfigMap's `dockyard.dev/hash`),
    /// which agents report back as they read it: an agent of another version, which might
    /// serialize the plan differently, still reports the operator's hash.
    #[serde(skip)]
    pub published_hash: Option<String>,
}

/// The annotation on a plan ConfigMap holding [`NodePlan::hash`].
pub const HASH_ANNOTATION: &str = "dockyard.dev/hash";

/// One registry host on the selected nodes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PlanEntry {
    /// The host as image names spell it: `docker.io`, `10.96.0.12:5000`.
    pub host: String,
    /// The upstream's base URL, kept as the fallback (`server` in containerd's hosts.toml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The mirror to try first (`https://10.96.0.50:5000`); none for a registry trusted as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<String>,
    /// The mirror (or registry) speaks plain HTTP.
    #[serde(default)]
    pub plain_http: bool,
    /// The CA (PEM) that signs the mirror's (or registry's) certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    pub runtimes: BTreeSet<Runtime>,
    /// Keep the upstream as the fallback when the mirror is down.
    #[serde(default)]
    pub fallback: bool,
}

impl NodePlan {
    /// A short, stable hash of the plan: what a report must carry to count as current (the
    /// published one, when the plan was read from its ConfigMap).
    pub fn hash(&self) -> String {
        if let Some(published) = &self.published_hash {
            return published.clone();
        }
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(&Sha256::digest(&json)[..8])
    }

    /// Whether the plan applies to `node`.
    pub fn selects(&self, node: &Node) -> bool {
        selects(&self.node_selector, &self.tolerations, node)
    }
}

/// The plan selection of `nodes` for a resource.
pub fn selection_of(nodes: &NodeSelection) -> (BTreeMap<String, String>, Vec<Toleration>) {
    (nodes.node_selector.clone(), nodes.tolerations.clone())
}

/// Whether a Linux node's labels match `selector` and every NoSchedule/NoExecute taint it
/// has is tolerated, as for a pod. Taints Kubernetes sets for a node's conditions
/// (`node.kubernetes.io/not-ready`, `unreachable`, `disk-pressure`, ...) do not deselect it,
/// as DaemonSets tolerate them: a node that is not ready yet still needs its configuration.
pub fn selects(
    selector: &BTreeMap<String, String>,
    tolerations: &[Toleration],
    node: &Node,
) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
        return false;
    }
    // The node agent runs on Linux nodes only (Windows and virtual nodes have no agent).
    if labels
        .get("kubernetes.io/os")
        .is_some_and(|os| os != "linux")
    {
        return false;
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .filter(|t| !t.key.starts_with("node.kubernetes.io/"))
        .all(|taint| {
            tolerations.iter().any(|tol| {
                let effect_ok = tol
                    .effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == taint.effect);
                let key_ok = match tol.key.as_deref() {
                    None | Some("") => tol.operator.as_deref() == Some("Exists"),
                    Some(k) => k == taint.key,
                };
                let value_ok = match tol.operator.as_deref() {
                    Some("Exists") => true,
                    _ => tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
                };
                effect_ok && key_ok && value_ok
            })
        })
}

/// The plan ConfigMap's name for the resource with `uid`.
pub fn plan_name(kind: &str, uid: &str) -> String {
    format!("dockyard-plan-{}-{uid}", kind.to_ascii_lowercase())
}

/// The report Lease's name for `node`.
pub fn report_name(node: &str) -> String {
    format!("dockyard-node-{node}")
}

/// What one node's agent reports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    /// Per plan owner.
    #[serde(default)]
    pub owners: BTreeMap<String, OwnerReport>,
    /// Problems of the node as a whole (e.g. containerd without `config_path`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Runtimes found on the node.
    #[serde(default)]
    pub runtimes: BTreeSet<Runtime>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReport {
    /// The hash of the plan the node carries.
    pub hash: String,
    /// Whether everything the plan asks for is in place.
    pub configured: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1", "labels": labels},
            "spec": {"taints": taints}
        }))
        .unwrap()
    }

    #[test]
    fn nodes_are_selected_by_labels_and_tolerated_taints() {
        let sel = BTreeMap::from([("pool".to_owned(), "a".to_owned())]);
        let plain = node(serde_json::json!({"pool": "a"}), serde_json::json!([]));
        assert!(selects(&sel, &[], &plain));
        assert!(!selects(
            &sel,
            &[],
            &node(serde_json::json!({"pool": "b"}), serde_json::json!([]))
        ));
        let tainted = node(
            serde_json::json!({"pool": "a"}),
            serde_json::json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
        );
        assert!(!selects(&sel, &[], &tainted));
        let tolerate: Toleration = serde_json::from_value(serde_json::json!(
            {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}
        ))
        .unwrap();
        assert!(selects(&sel, &[tolerate], &tainted));
        let everything: Toleration =
            serde_json::from_value(serde_json::json!({"operator": "Exists"})).unwrap();
        assert!(selects(&sel, &[everything], &tainted));
        let prefer = node(
            serde_json::json!({"pool": "a"}),
            serde_json::json!([{"key": "x", "effect": "PreferNoSchedule"}]),
        );
        assert!(selects(&sel, &[], &prefer), "soft taints do not exclude");
        let not_ready = node(
            serde_json::json!({"pool": "a"}),
            serde_json::json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]),
        );
        assert!(
            selects(&sel, &[], &not_ready),
            "condition taints do not exclude"
        );
    }

    #[test]
    fn the_hash_changes_with_the_plan() {
        let mut plan = NodePlan {
            owner: "RegistryMirror/ns/m".into(),
            entries: vec![PlanEntry {
                host: "docker.io".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let first = plan.hash();
        assert_eq!(first, plan.hash());
        assert_eq!(first.len(), 16);
        plan.entries[0].mirror = Some("https://10.96.0.50:5000".into());
        assert_ne!(first, plan.hash());
    }
}
