//! The workload's PodDisruptionBudget: with more than one replica, a node drain or a cluster
//! upgrade evicts one registry pod at a time, so the others keep serving. A single replica
//! gets none (a budget could only block its node's drain).

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Workload;

/// The budget of `d`, named like it, when it runs more than one replica.
pub fn disruption_budget(d: &Workload) -> Option<PodDisruptionBudget> {
    (d.replicas > 1).then(|| PodDisruptionBudget {
        metadata: d.owned(d.name.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(d.selector()),
                ..LabelSelector::default()
            }),
            // A pod that is not ready serves nothing: evicting it never blocks a drain.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
            min_available: None,
        }),
        status: None,
    })
}
