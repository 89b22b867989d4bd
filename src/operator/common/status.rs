//! Status shared by every kind: conditions `Ready`, `Progressing` and `Degraded`, computed
//! purely from the objects as apply returned them (a condition's transition time changes
//! only when its status does); what keeps a rollout waiting (an unbound claim, a pod the
//! scheduler cannot place), named in the conditions; the Event a transition deserves; and
//! writing a status with server-side apply.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::operator::{Error, MANAGER};

/// What the reconcile found, for the conditions.
pub enum Outcome<'a> {
    /// Children applied; how far the rollout is.
    Applied {
        /// The Deployment as apply returned it.
        deployment: &'a Deployment,
        /// Replicas the spec asks for.
        wanted: i32,
        endpoint: String,
        warning: Option<(&'static str, String)>,
        /// Why the rollout cannot progress, if something outside the operator blocks it.
        waiting: Option<Waiting>,
    },
    /// The spec cannot be reconciled as written.
    Invalid {
        reason: &'static str,
        message: String,
    },
}

/// Something outside the operator that keeps the registry from becoming ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// `Unschedulable` or `ClaimPending`: the Ready condition's reason.
    pub reason: &'static str,
    pub message: String,
}

/// Reasons of a Ready condition that name something blocking the rollout.
pub const WAITING_REASONS: [&str; 2] = ["Unschedulable", "ClaimPending"];

/// How long a new claim may stay Pending before it is reported as blocking. With a
/// WaitForFirstConsumer StorageClass (the common kind) a claim binds only after its pod is
/// scheduled, a second or two after it was made; that is not worth a condition or an Event.
pub const CLAIM_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// Set on a claim once the scheduler has picked a node for its pod: from then on, a Pending
/// claim waits for its provisioner, not for the pod.
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// How long until a Pending claim counts as stuck; `None` when it already does, or is bound.
pub fn claim_grace_left(
    volume: &PersistentVolumeClaim,
    now: Timestamp,
) -> Option<std::time::Duration> {
    let phase = volume.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase == Some("Bound") || volume.annotations().contains_key(SELECTED_NODE) {
        return None;
    }
    let created = volume.metadata.creation_timestamp.as_ref()?.0;
    let age = std::time::Duration::try_from(now.duration_since(created)).unwrap_or_default();
    CLAIM_GRACE.checked_sub(age).filter(|left| !left.is_zero())
}

/// What blocks the rollout at `now`: a registry pod the scheduler cannot place (its message
/// usually says why, e.g. an unbound claim), else the data claim (if there is one), once it
/// has been Pending past [`CLAIM_GRACE`] or its provisioning has begun.
pub fn waiting(
    volume: Option<&PersistentVolumeClaim>,
    pods: &[Pod],
    now: Timestamp,
) -> Option<Waiting> {
    let unschedulable = pods.iter().find_map(|pod| {
        let conditions = pod.status.as_ref()?.conditions.as_ref()?;
        let scheduled = conditions.iter().find(|c| c.type_ == "PodScheduled")?;
        (scheduled.status == "False").then(|| {
            format!(
                "pod {} cannot be scheduled: {}",
                pod.metadata.name.as_deref().unwrap_or("?"),
                scheduled.message.as_deref().unwrap_or("no reason given")
            )
        })
    });
    let claim = volume.and_then(|volume| {
        let phase = volume
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        let class = volume
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref())
            .map(|c| format!(" {c:?}"))
            .unwrap_or_default();
        (phase != "Bound").then(|| {
            format!(
                "PersistentVolumeClaim {} is {phase}: no volume is bound to it yet (check that its StorageClass{class} exists and can provision volumes, or create a PersistentVolume it can bind)",
                volume.metadata.name.as_deref().unwrap_or("?")
            )
        })
    });
    if let Some(pod) = unschedulable {
        // When the claim is what the scheduler waits for, its message does not name it: say
        // which claim, and what to check.
        let message = match claim {
            Some(claim) if pod.to_ascii_lowercase().contains("persistentvolumeclaim") => {
                format!("{pod}; {claim}")
            }
            _ => pod,
        };
        return Some(Waiting {
            reason: "Unschedulable",
            message,
        });
    }
    if volume.is_some_and(|v| claim_grace_left(v, now).is_some()) {
        return None;
    }
    claim.map(|message| Waiting {
        reason: "ClaimPending",
        message,
    })
}

pub fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    }
}

/// The conditions for `outcome`, keeping the transition times of those in `previous` whose
/// status did not change, and the ready replicas when the children were applied.
pub fn conditions(
    outcome: &Outcome<'_>,
    previous: &[Condition],
    generation: Option<i64>,
    now: Timestamp,
) -> (Vec<Condition>, Option<i32>) {
    let (conditions, ready_replicas) = match outcome {
        Outcome::Invalid { reason, message } => (
            vec![
                condition("Ready", false, reason, message.clone(), generation),
                condition(
                    "Progressing",
                    false,
                    reason,
                    "waiting for the spec to be fixed".into(),
                    generation,
                ),
                condition("Degraded", true, reason, message.clone(), generation),
            ],
            None,
        ),
        Outcome::Applied {
            deployment,
            wanted,
            endpoint,
            warning,
            waiting,
        } => {
            let wanted = *wanted;
            let status = deployment.status.clone().unwrap_or_default();
            let ready = status.ready_replicas.unwrap_or(0);
            let updated = status.updated_replicas.unwrap_or(0);
            // The Deployment controller has not seen the applied spec yet: nothing is known
            // about its rollout, whatever the replica counts say.
            let observed = status
                .observed_generation
                .zip(deployment.metadata.generation)
                .is_some_and(|(seen, current)| seen >= current);
            let rolled_out = observed && ready >= wanted && updated >= wanted;
            let (ready_reason, ready_message) = match waiting {
                _ if rolled_out => (
                    "Available",
                    format!("{ready}/{wanted} replicas ready at {endpoint}"),
                ),
                Some(w) => (
                    w.reason,
                    format!("{ready}/{wanted} replicas ready: {}", w.message),
                ),
                None => ("RollingOut", format!("{ready}/{wanted} replicas ready")),
            };
            let (degraded, degraded_reason, degraded_message) = match warning {
                Some((reason, message)) => (true, *reason, message.clone()),
                None => (false, "AsExpected", "all children applied".to_owned()),
            };
            (
                vec![
                    condition(
                        "Ready",
                        rolled_out && !degraded,
                        if degraded {
                            degraded_reason
                        } else {
                            ready_reason
                        },
                        ready_message.clone(),
                        generation,
                    ),
                    condition(
                        "Progressing",
                        !rolled_out,
                        ready_reason,
                        ready_message,
                        generation,
                    ),
                    condition(
                        "Degraded",
                        degraded,
                        degraded_reason,
                        degraded_message,
                        generation,
                    ),
                ],
                Some(ready),
            )
        }
    };
    (
        keep_transition_times(conditions, previous, now),
        ready_replicas,
    )
}

/// `conditions` plus the previous `NodesConfigured`, if any: a spec that cannot be applied
/// changes nothing on the nodes, which keep the last plan.
pub fn keep_nodes_condition(
    mut conditions: Vec<Condition>,
    previous: &[Condition],
) -> Vec<Condition> {
    if let Some(nodes) = previous.iter().find(|c| c.type_ == "NodesConfigured") {
        conditions.push(nodes.clone());
    }
    conditions
}

/// `conditions` with the transition time of each one whose status is unchanged from
/// `previous`, and `now` for the others.
pub fn keep_transition_times(
    conditions: Vec<Condition>,
    previous: &[Condition],
    now: Timestamp,
) -> Vec<Condition> {
    conditions
        .into_iter()
        .map(|mut c| {
            let same = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == c.status);
            c.last_transition_time = same
                .map(|p| p.last_transition_time.clone())
                .unwrap_or(Time(now));
            c
        })
        .collect()
}

/// The Event to publish when Ready or Degraded changes, or when the rollout starts waiting
/// for something outside the operator (an unschedulable pod, an unbound claim).
pub fn transition(
    before: &[Condition],
    next: &[Condition],
) -> Option<(EventType, &'static str, String)> {
    let find = |s: &[Condition], t: &str| s.iter().find(|c| c.type_ == t).cloned();
    let became = |t: &str| {
        let now = find(next, t)?;
        let was = find(before, t).map(|c| c.status);
        (now.status == "True" && was.as_deref() != Some("True")).then_some(now.message)
    };
    if let Some(message) = became("Degraded") {
        return Some((EventType::Warning, "Degraded", message));
    }
    if let Some(message) = became("Ready") {
        return Some((EventType::Normal, "Ready", message));
    }
    let ready = find(next, "Ready")?;
    let before_reason = find(before, "Ready").map(|c| c.reason);
    let waiting = WAITING_REASONS
        .into_iter()
        .find(|r| *r == ready.reason && before_reason.as_deref() != Some(r))?;
    let type_ = if waiting == "Unschedulable" {
        EventType::Warning
    } else {
        EventType::Normal
    };
    Some((type_, waiting, ready.message))
}

/// Publishes an Event about `object`; a failure is logged, never fatal.
pub async fn publish_on(
    recorder: &Recorder,
    object: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, object).await {
        tracing::warn!(error = %e, "cannot publish event");
    }
}

/// Writes `status` to `object` with server-side apply, unless it already has it.
pub async fn write<K, S>(
    client: &kube::Client,
    object: &K,
    current: Option<&S>,
    status: &S,
) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(());
    }
    let namespace = object.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentStatus;

    /// The conditions and ready replicas of a two-replica resource at generation 3.
    struct S {
        conditions: Vec<Condition>,
        ready_replicas: Option<i32>,
    }

    fn compute(previous: Option<S>, outcome: &Outcome<'_>, now: Timestamp) -> S {
        let previous = previous.map(|p| p.conditions).unwrap_or_default();
        let (conditions, ready_replicas) = conditions(outcome, &previous, Some(3), now);
        S {
            conditions,
            ready_replicas,
        }
    }

    fn deployment(ready: i32) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.generation = Some(1);
        d.status = Some(DeploymentStatus {
            observed_generation: Some(1),
            ready_replicas: Some(ready),
            updated_replicas: Some(2),
            ..Default::default()
        });
        d
    }

    fn get<'a>(s: &'a S, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn ready_when_every_replica_is_and_times_only_move_on_change() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let applied = |d| Outcome::Applied {
            deployment: d,
            wanted: 2,
            endpoint: "10.96.0.7:5000".into(),
            warning: None,
            waiting: None,
        };
        let rolling = deployment(1);
        let s = compute(None, &applied(&rolling), t0);
        assert_eq!(
            (
                get(&s, "Ready").status.as_str(),
                get(&s, "Progressing").status.as_str()
            ),
            ("False", "True")
        );
        assert_eq!(s.ready_replicas, Some(1));
        let done = deployment(2);
        let s2 = compute(Some(s), &applied(&done), t1);
        assert_eq!(get(&s2, "Ready").status, "True");
        assert_eq!(get(&s2, "Ready").last_transition_time.0, t1);
        assert_eq!(
            get(&s2, "Degraded").last_transition_time.0,
            t0,
            "Degraded stayed False"
        );
        assert!(get(&s2, "Ready").message.ends_with("at 10.96.0.7:5000"));
        // A spec change the Deployment controller has not observed yet is not Ready, even
        // though the old pods still count as ready and updated.
        let mut changed = deployment(2);
        changed.metadata.generation = Some(2);
        let s3 = compute(Some(s2), &applied(&changed), t1);
        assert_eq!(get(&s3, "Ready").status, "False");
        assert_eq!(get(&s3, "Progressing").status, "True");
    }

    #[test]
    fn a_new_pending_claim_is_not_reported_until_its_grace_ends_or_provisioning_begins() {
        let now = Timestamp::from_second(10_000).unwrap();
        let claim = |age_secs: i64, annotations: serde_json::Value| -> PersistentVolumeClaim {
            let created = Timestamp::from_second(10_000 - age_secs).unwrap();
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "reg-data", "creationTimestamp": created.to_string(),
                    "annotations": annotations},
                "status": {"phase": "Pending"}
            }))
            .unwrap()
        };
        let fresh = claim(5, serde_json::json!({}));
        assert_eq!(waiting(Some(&fresh), &[], now), None);
        assert_eq!(
            claim_grace_left(&fresh, now),
            Some(std::time::Duration::from_secs(10))
        );
        let old = claim(20, serde_json::json!({}));
        assert_eq!(
            waiting(Some(&old), &[], now).unwrap().reason,
            "ClaimPending"
        );
        assert_eq!(claim_grace_left(&old, now), None);
        let provisioning = claim(1, serde_json::json!({SELECTED_NODE: "node-1"}));
        assert_eq!(
            waiting(Some(&provisioning), &[], now).unwrap().reason,
            "ClaimPending"
        );
    }

    #[test]
    fn an_unbound_claim_or_an_unschedulable_pod_is_named() {
        let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "reg-data"}, "status": {"phase": "Pending"}
        }))
        .unwrap();
        let now = Timestamp::from_second(10_000).unwrap();
        let waiting_for_claim = waiting(Some(&claim), &[], now).unwrap();
        assert_eq!(waiting_for_claim.reason, "ClaimPending");
        assert!(waiting_for_claim.message.contains("reg-data is Pending"));
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "reg-abc"},
            "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."}]}
        }))
        .unwrap();
        let w = waiting(Some(&claim), &[pod], now).unwrap();
        assert_eq!(w.reason, "Unschedulable");
        assert!(
            w.message.contains("reg-abc cannot be scheduled: 0/1 nodes"),
            "{}",
            w.message
        );
        let mut bound = claim.clone();
        bound.status.as_mut().unwrap().phase = Some("Bound".into());
        assert_eq!(waiting(Some(&bound), &[], now), None);
        let s = compute(
            None,
            &Outcome::Applied {
                deployment: &deployment(0),
                wanted: 2,
                endpoint: "10.96.0.7:5000".into(),
                warning: None,
                waiting: Some(w),
            },
            Timestamp::from_second(1).unwrap(),
        );
        let ready = get(&s, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "Unschedulable")
        );
        assert!(
            ready.message.starts_with("0/2 replicas ready: pod reg-abc"),
            "{}",
            ready.message
        );
    }

    #[test]
    fn invalid_specs_are_degraded_with_the_reason() {
        let s = compute(
            None,
            &Outcome::Invalid {
                reason: "SecretNotFound",
                message: "auth.users[a]: Secret \"pw\" does not exist".into(),
            },
            Timestamp::from_second(1).unwrap(),
        );
        assert_eq!(get(&s, "Degraded").status, "True");
        assert_eq!(get(&s, "Degraded").reason, "SecretNotFound");
        assert_eq!(get(&s, "Ready").status, "False");
        assert!(get(&s, "Ready").message.contains("\"pw\""));
    }
}
