//! Node configuration seen from the operator: publishing a resource's [`NodePlan`] for the
//! node agents (a ConfigMap in the operator's namespace, guarded by a finalizer on the
//! resource), and counting the nodes that carry it from their agents' report Leases
//! (pure: [`status`]).

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams};

use super::common::apply::{delete_if_present, sync_finalizers};
use super::common::{MANAGED_BY, Workload};
use super::crd::{NodeProblem, NodesStatus};
use super::nodeplan::{
    HASH_ANNOTATION, NodePlan, NodeReport, PLAN_FINALIZER, PLAN_KEY, PLAN_LABEL, REPORT_ANNOTATION,
    REPORT_LABEL, plan_name,
};
use super::{Error, MANAGER};

/// Label on a plan: the uid of the resource it belongs to.
pub const OWNER_UID_LABEL: &str = "dockyard.dev/owner-uid";

/// Problems listed in a status at most.
const MAX_PROBLEMS: usize = 20;

/// The plan ConfigMap of `w` (of `kind`) in `namespace`.
pub fn plan_config_map(kind: &str, w: &Workload, plan: &NodePlan, namespace: &str) -> ConfigMap {
    let json = serde_json::to_string_pretty(plan).unwrap_or_default();
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(plan_name(kind, &w.owner.uid)),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (PLAN_LABEL.to_owned(), "true".to_owned()),
                (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
                (OWNER_UID_LABEL.to_owned(), w.owner.uid.clone()),
            ])),
            annotations: Some(BTreeMap::from([
                ("dockyard.dev/owner".to_owned(), plan.owner.clone()),
                (HASH_ANNOTATION.to_owned(), plan.hash()),
            ])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(PLAN_KEY.to_owned(), json)])),
        ..ConfigMap::default()
    }
}

/// Applies the plan of `w`, or deletes it when `plan` is `None`.
pub async fn publish(
    client: &kube::Client,
    namespace: &str,
    kind: &str,
    w: &Workload,
    plan: Option<&NodePlan>,
) -> Result<(), Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let name = plan_name(kind, &w.owner.uid);
    match plan {
        Some(plan) => {
            let cm = plan_config_map(kind, w, plan, namespace);
            api.patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&cm),
            )
            .await?;
            Ok(())
        }
        None => delete_if_present(&api, &name).await,
    }
}

/// Publishes `plan` for `object` (or withdraws it when `None`), then keeps its finalizers
/// exactly as wanted: the plan finalizer while a plan exists, plus `others`; and counts the
/// nodes that carry the plan.
pub async fn publish_and_count<K>(
    client: &kube::Client,
    namespace: &str,
    w: &Workload,
    object: &K,
    plan: Option<&NodePlan>,
    others: &[(&str, bool)],
) -> Result<Option<NodesStatus>, Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let kind = K::kind(&());
    publish(client, namespace, &kind, w, plan).await?;
    let mut finalizers = vec![(PLAN_FINALIZER, plan.is_some())];
    finalizers.extend_from_slice(others);
    sync_finalizers(client, object, &finalizers).await?;
    let Some(plan) = plan else {
        return Ok(None);
    };
    let (all, reports) = observe(client, namespace).await?;
    Ok(Some(status(plan, &all, &reports, Timestamp::now())))
}

/// Deletes the plan of the resource with `uid`.
pub async fn withdraw(
    client: &kube::Client,
    namespace: &str,
    kind: &str,
    uid: &str,
) -> Result<(), Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    delete_if_present(&api, &plan_name(kind, uid)).await
}

/// Deletes the plans whose resource is gone (or was re-created under another uid) without
/// withdrawing them: a finalizer removed by hand, a namespace force-deleted. Their nodes then
/// remove the files. Returns how many went.
pub async fn collect_orphans(client: &kube::Client, namespace: &str) -> Result<usize, Error> {
    use super::crd::{Registry, RegistryMirror};
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut removed = 0;
    for plan in api
        .list_metadata(&ListParams::default().labels(&format!("{PLAN_LABEL}=true")))
        .await?
    {
        let owner = plan.annotations().get("dockyard.dev/owner").cloned();
        let uid = plan.labels().get(OWNER_UID_LABEL).cloned();
        let (Some(owner), Some(uid)) = (owner, uid) else {
            continue;
        };
        let mut parts = owner.splitn(3, '/');
        let (Some(kind), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let current = match kind {
            "Registry" => Api::<Registry>::namespaced(client.clone(), ns)
                .get_metadata_opt(name)
                .await?
                .and_then(|o| o.metadata.uid),
            "RegistryMirror" => Api::<RegistryMirror>::namespaced(client.clone(), ns)
                .get_metadata_opt(name)
                .await?
                .and_then(|o| o.metadata.uid),
            _ => continue,
        };
        if current.as_deref() != Some(uid.as_str()) {
            tracing::info!(plan = %plan.name_any(), %owner, "deleting the node plan of a resource that is gone");
            delete_if_present(&api, &plan.name_any()).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The nodes and the agents' report Leases, for [`status`].
pub async fn observe(
    client: &kube::Client,
    namespace: &str,
) -> Result<(Vec<Node>, Vec<Lease>), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let nodes = nodes.list(&ListParams::default()).await?.items;
    let reports = leases
        .list(&ListParams::default().labels(&format!("{REPORT_LABEL}=true")))
        .await?
        .items;
    Ok((nodes, reports))
}

/// How many of the nodes `plan` selects carry it, per their agents' `reports`, at `now`.
pub fn status(plan: &NodePlan, nodes: &[Node], reports: &[Lease], now: Timestamp) -> NodesStatus {
    let hash = plan.hash();
    let by_node: BTreeMap<String, &Lease> = reports
        .iter()
        .filter_map(|l| Some((l.spec.as_ref()?.holder_identity.clone()?, l)))
        .collect();
    let mut selected: Vec<&Node> = nodes.iter().filter(|n| plan.selects(n)).collect();
    selected.sort_by_key(|n| n.name_any());
    let mut problems = Vec::new();
    let mut configured = 0;
    for node in &selected {
        let name = node.name_any();
        match problem(plan, &hash, by_node.get(&name).copied(), now) {
            None => configured += 1,
            Some(message) => problems.push(NodeProblem {
                node: name,
                message,
            }),
        }
    }
    problems.truncate(MAX_PROBLEMS);
    let total = selected.len() as i32;
    NodesStatus {
        configured,
        total,
        summary: format!("{configured}/{total}"),
        problems,
    }
}

/// Why a node does not carry the plan with `hash`, or `None` when it does.
fn problem(plan: &NodePlan, hash: &str, lease: Option<&Lease>, now: Timestamp) -> Option<String> {
    let Some(lease) = lease else {
        return Some(
            "no report from Dockyard's node agent on this node: check that the chart's node-agent DaemonSet runs there (its tolerations and nodeSelector)".into(),
        );
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let renewed = spec.renew_time.map(|t| t.0);
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    let current = renewed.is_some_and(|t| t.as_second() + seconds >= now.as_second());
    if !current {
        let when = renewed
            .map(|t| t.to_string())
            .unwrap_or_else(|| "never".into());
        return Some(format!(
            "the node agent stopped reporting (last report: {when}); check its pod on this node"
        ));
    }
    let report: NodeReport = lease
        .annotations()
        .get(REPORT_ANNOTATION)
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or_default();
    let Some(own) = report.owners.get(&plan.owner) else {
        return Some(match report.problems.first() {
            Some(p) => p.clone(),
            None => "the node agent has not applied this configuration yet".into(),
        });
    };
    if own.hash != hash {
        return Some("the node agent is applying the current configuration".into());
    }
    if own.configured {
        return None;
    }
    let mut all = own.problems.clone();
    all.extend(report.problems.iter().cloned());
    Some(if all.is_empty() {
        "the node agent could not apply this configuration".into()
    } else {
        all.join("; ")
    })
}

/// `NodesConfigured`: True once every selected node carries the current configuration;
/// False while some do not, and when no node is selected at all (a selector that matches
/// nothing is almost always a mistake).
pub fn condition(n: &NodesStatus, generation: Option<i64>) -> Condition {
    let (ok, reason, message) = if n.total == 0 {
        (
            false,
            "NoNodesSelected",
            "no node matches nodes.nodeSelector with nodes.tolerations: check the labels and taints of the nodes that should pull through this mirror".to_owned(),
        )
    } else if n.configured == n.total {
        (
            true,
            "AllNodesConfigured",
            format!("{} of {} selected nodes configured", n.configured, n.total),
        )
    } else {
        let first = n
            .problems
            .first()
            .map(|p| format!("; {}: {}", p.node, p.message))
            .unwrap_or_default();
        (
            false,
            "NodesPending",
            format!(
                "{} of {} selected nodes configured{first}",
                n.configured, n.total
            ),
        )
    };
    super::common::status::condition("NodesConfigured", ok, reason, message, generation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::nodeplan::{OwnerReport, PlanEntry};

    fn plan() -> NodePlan {
        NodePlan {
            owner: "RegistryMirror/ns/m".into(),
            node_selector: BTreeMap::from([("pool".into(), "a".into())]),
            entries: vec![PlanEntry {
                host: "docker.io".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn node(name: &str, pool: &str) -> Node {
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": name, "labels": {"pool": pool}}}),
        )
        .unwrap()
    }

    fn lease(node: &str, renewed: i64, report: &NodeReport) -> Lease {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("dockyard-node-{node}"),
                "annotations": {REPORT_ANNOTATION: serde_json::to_string(report).unwrap()}},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": 90,
                "renewTime": Timestamp::from_second(renewed).unwrap().to_string()}
        }))
        .unwrap()
    }

    #[test]
    fn nodes_count_when_their_current_report_carries_the_plan() {
        let p = plan();
        let good = NodeReport {
            owners: BTreeMap::from([(
                p.owner.clone(),
                OwnerReport {
                    hash: p.hash(),
                    configured: true,
                    problems: vec![],
                },
            )]),
            ..Default::default()
        };
        let stale_hash = NodeReport {
            owners: BTreeMap::from([(
                p.owner.clone(),
                OwnerReport {
                    hash: "old".into(),
                    configured: true,
                    problems: vec![],
                },
            )]),
            ..Default::default()
        };
        let failing = NodeReport {
            owners: BTreeMap::from([(
                p.owner.clone(),
                OwnerReport {
                    hash: p.hash(),
                    configured: false,
                    problems: vec!["containerd has no config_path".into()],
                },
            )]),
            ..Default::default()
        };
        let nodes = [
            node("a1", "a"),
            node("a2", "a"),
            node("a3", "a"),
            node("a4", "a"),
            node("a5", "a"),
            node("b1", "b"),
        ];
        let now = Timestamp::from_second(10_000).unwrap();
        let reports = [
            lease("a1", 9_990, &good),
            lease("a2", 9_990, &stale_hash),
            lease("a3", 9_990, &failing),
            lease("a4", 1_000, &good),
            lease("b1", 9_990, &good),
        ];
        let s = status(&p, &nodes, &reports, now);
        assert_eq!((s.configured, s.total, s.summary.as_str()), (1, 5, "1/5"));
        let why: BTreeMap<_, _> = s
            .problems
            .iter()
            .map(|p| (p.node.as_str(), p.message.as_str()))
            .collect();
        assert!(why["a2"].contains("applying"), "{why:?}");
        assert_eq!(why["a3"], "containerd has no config_path");
        assert!(why["a4"].contains("stopped reporting"), "{why:?}");
        assert!(why["a5"].contains("no report"), "{why:?}");
        assert!(!why.contains_key("b1"), "not selected");
    }

    fn nodes(configured: i32, total: i32) -> NodesStatus {
        NodesStatus {
            configured,
            total,
            summary: format!("{configured}/{total}"),
            problems: if configured < total {
                vec![NodeProblem {
                    node: "n2".into(),
                    message: "containerd has no config_path".into(),
                }]
            } else {
                vec![]
            },
        }
    }

    #[test]
    fn nodes_configured_says_how_many_and_why_not() {
        let all = condition(&nodes(2, 2), Some(1));
        assert_eq!(
            (all.status.as_str(), all.reason.as_str()),
            ("True", "AllNodesConfigured")
        );
        let some = condition(&nodes(1, 2), Some(1));
        assert_eq!(some.status, "False");
        assert_eq!(
            some.message,
            "1 of 2 selected nodes configured; n2: containerd has no config_path"
        );
        let none = condition(&nodes(0, 0), Some(1));
        assert_eq!(
            (none.status.as_str(), none.reason.as_str()),
            ("False", "NoNodesSelected")
        );
    }
}
