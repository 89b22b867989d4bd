//! The Registry's status: the shared conditions (`common::status`), the endpoint, ready
//! replicas, the CA Secret and where the images are.

use k8s_openapi::jiff::Timestamp;
use kube::Resource;

use crate::operator::common::status::{
    Outcome, conditions, keep_nodes_condition, keep_transition_times,
};
use crate::operator::crd::{NodesStatus, Registry, RegistryStatus};

/// What an applied spec reports besides its conditions.
pub struct Found {
    pub ca_secret: Option<String>,
    /// `s3://bucket/root` or `pvc/<claim>`.
    pub storage: String,
    pub nodes: Option<NodesStatus>,
}

/// The status for `outcome` (with what was `found` when it was applied); when the spec could
/// not be applied, the previous endpoint, replicas, CA, storage and node counts are kept.
pub fn compute(
    registry: &Registry,
    outcome: &Outcome<'_>,
    found: Option<Found>,
    now: Timestamp,
) -> RegistryStatus {
    let previous = registry.status.clone().unwrap_or_default();
    let generation = registry.meta().generation;
    let (mut conditions, ready) = conditions(outcome, &previous.conditions, generation, now);
    match (outcome, found) {
        (Outcome::Applied { endpoint, .. }, Some(found)) => {
            if let Some(n) = &found.nodes {
                conditions.push(crate::operator::nodes::condition(n, generation));
                conditions = keep_transition_times(conditions, &previous.conditions, now);
            }
            RegistryStatus {
                conditions,
                observed_generation: generation,
                endpoint: Some(endpoint.clone()),
                ready_replicas: ready,
                ca_secret: found.ca_secret,
                storage: Some(found.storage),
                nodes: found.nodes,
            }
        }
        _ => RegistryStatus {
            conditions: keep_nodes_condition(conditions, &previous.conditions),
            observed_generation: generation,
            ..previous
        },
    }
}
