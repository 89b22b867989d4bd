//! The Registry's status: the shared conditions (`common::status`), the endpoint, ready
//! replicas and the CA Secret.

use k8s_openapi::jiff::Timestamp;
use kube::Resource;

use crate::operator::common::status::{
    Outcome, conditions, keep_nodes_condition, keep_transition_times,
};
use crate::operator::crd::{NodesStatus, Registry, RegistryStatus};

/// The status for `outcome`; when the spec could not be applied, the previous endpoint,
/// replicas, CA and node counts are kept.
pub fn compute(
    registry: &Registry,
    outcome: &Outcome<'_>,
    ca_secret: Option<String>,
    nodes: Option<NodesStatus>,
    now: Timestamp,
) -> RegistryStatus {
    let previous = registry.status.clone().unwrap_or_default();
    let generation = registry.meta().generation;
    let (mut conditions, ready) = conditions(outcome, &previous.conditions, generation, now);
    if let (Outcome::Applied { .. }, Some(n)) = (outcome, &nodes) {
        conditions.push(crate::operator::nodes::condition(n, generation));
        conditions = keep_transition_times(conditions, &previous.conditions, now);
    }
    match outcome {
        Outcome::Invalid { .. } => RegistryStatus {
            conditions: keep_nodes_condition(conditions, &previous.conditions),
            observed_generation: generation,
            ..previous
        },
        Outcome::Applied { endpoint, .. } => RegistryStatus {
            conditions,
            observed_generation: generation,
            endpoint: Some(endpoint.clone()),
            ready_replicas: ready,
            ca_secret,
            nodes,
        },
    }
}
