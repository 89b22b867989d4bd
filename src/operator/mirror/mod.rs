//! Reconciles a `RegistryMirror`: fetch -> validate -> build -> apply -> status, on the
//! same shared parts as the Registry (`operator::common`): a Deployment of `dockyard serve`
//! in mirror mode with its config Secret, a claim, a Service and TLS. Then the node plan the
//! node agents apply (`operator::nodes`), and the nodes that carry it in the status.

pub mod build;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::common::apply::{
    CertificateOutcome, apply, apply_certificate, remove_stale_children, sync_finalizers,
};
use super::common::status::{self as common_status, Outcome, claim_grace_left, publish_on};
use super::common::validate::{Invalid, service_invalid};
use super::common::{Addresses, tls};
use super::crd::{NodesStatus, RegistryMirror, RegistryMirrorStatus, TlsMode};
use super::nodeplan::{NodePlan, PLAN_FINALIZER, PlanEntry};
use super::{Context, Error, nodes};
use validate::Desired;

pub const KIND: &str = "RegistryMirror";

/// Reconciles one RegistryMirror; a success resets its retry delay.
#[tracing::instrument(skip(mirror, ctx), fields(name = %mirror.name_any(), namespace = mirror.namespace().unwrap_or_default()))]
pub async fn reconcile(mirror: Arc<RegistryMirror>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.reconciling(KIND, mirror.as_ref(), run(&mirror, &ctx))
        .await
}

async fn run(mirror: &RegistryMirror, ctx: &Context) -> Result<Action, Error> {
    let client = &ctx.client;
    let namespace = mirror.namespace().ok_or(Error::NoNamespace)?;
    if mirror.meta().deletion_timestamp.is_some() {
        // Owner references remove the rest; the node plan lives in the operator's namespace.
        let uid = mirror.uid().unwrap_or_default();
        nodes::withdraw(client, &ctx.node_namespace, KIND, &uid).await?;
        sync_finalizers(client, mirror, &[(PLAN_FINALIZER, false)]).await?;
        return Ok(Action::await_change());
    }
    let secrets_api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let names = validate::referenced_secrets(mirror);
    let secrets = super::common::fetch::secrets(client, &namespace, names).await?;
    let desired = match validate::validate(mirror, &secrets, &ctx.image) {
        Ok(d) => d,
        Err(invalid) => return report_invalid(ctx, mirror, invalid).await,
    };
    let w = &desired.workload;
    if let Some(invalid) = super::common::apply::name_conflict(client, w).await? {
        return report_invalid(ctx, mirror, invalid).await;
    }
    let wants_nodes = desired.nodes.enabled;
    // The finalizer comes before the plan and goes only after it is withdrawn, so a plan is
    // never left behind.
    let mut latest = mirror.clone();
    if wants_nodes
        && let Some(patched) = sync_finalizers(client, &latest, &[(PLAN_FINALIZER, true)]).await?
    {
        latest = patched;
    }
    let existing = tls::fetch(&secrets_api, w).await?;
    let service = match apply(client, &build_service(&desired)).await {
        Err(Error::Kube(kube::Error::Api(e))) if e.code == 422 => {
            return report_invalid(ctx, mirror, service_invalid(&e.message)).await;
        }
        other => other?,
    };
    let addresses = Addresses::of(w, &service);
    let now = Timestamp::now().as_second();
    let prepared = tokio::task::block_in_place(|| tls::prepare(w, &addresses, &existing, now));
    let self_signed = match prepared {
        Ok(m) => m,
        Err(e) => {
            let invalid = Invalid {
                reason: "CertificateError",
                message: e.to_string(),
            };
            return report_invalid(ctx, mirror, invalid).await;
        }
    };
    let applied = apply_children(client, &desired, &addresses, self_signed.as_ref()).await?;
    let ca_pem = match &self_signed {
        Some(m) => Some(m.ca.cert_pem.clone()),
        None => tls::fetch_ca(&secrets_api, w).await?,
    };
    let plan = wants_nodes
        .then(|| node_plan(mirror, &desired, &addresses, ca_pem))
        .flatten();
    let node_status =
        nodes::publish_and_count(client, &ctx.node_namespace, w, &latest, plan.as_ref(), &[])
            .await?;

    let pods = super::common::fetch::pods(client, &namespace, &w.children_selector()).await?;
    let now = Timestamp::now();
    let outcome = Outcome::Applied {
        deployment: &applied.deployment,
        wanted: w.replicas,
        endpoint: addresses.endpoint(),
        warning: applied.certificate.warning(),
        waiting: common_status::waiting(applied.volume.as_ref(), &pods, now),
    };
    let next = status(mirror, &desired, &outcome, w.ca_secret(), node_status, now);
    publish_transitions(ctx, mirror, &next).await;
    common_status::write(client, mirror, mirror.status.as_ref(), &next).await?;
    // Changed node reports are watched; an agent that stops reporting, and the claim's
    // grace, need a timer.
    let idle = if plan.is_some() { 60 } else { 300 };
    let recheck = (applied.volume.as_ref())
        .and_then(|claim| claim_grace_left(claim, now))
        .map_or(Duration::from_secs(idle), |left| {
            left + Duration::from_secs(1)
        });
    Ok(Action::requeue(recheck))
}

/// What applying the children returned that status needs.
struct Applied {
    deployment: k8s_openapi::api::apps::v1::Deployment,
    volume: Option<k8s_openapi::api::core::v1::PersistentVolumeClaim>,
    certificate: CertificateOutcome,
}

/// Builds and applies every child but the Service, then deletes the owned ones no longer
/// wanted.
async fn apply_children(
    client: &kube::Client,
    desired: &Desired,
    addresses: &Addresses,
    self_signed: Option<&tls::SelfSigned>,
) -> Result<Applied, Error> {
    let w = &desired.workload;
    let children = build::build(desired, addresses, self_signed);
    let build::Children {
        config,
        ca,
        tls: serving,
        certificate,
        volume,
        deployment,
    } = &children;
    apply(client, config).await?;
    for secret in [ca, serving].into_iter().flatten() {
        apply(client, secret).await?;
    }
    let certificate_outcome = apply_certificate(client, w, certificate.as_ref()).await?;
    let volume = match volume {
        Some(claim) => Some(apply(client, claim).await?),
        None => None,
    };
    let deployment = apply(client, deployment).await?;
    let wanted = build::wanted_secrets(desired, &children);
    remove_stale_children(client, w, &wanted, certificate.is_some()).await?;
    Ok(Applied {
        deployment,
        volume,
        certificate: certificate_outcome,
    })
}

fn build_service(d: &Desired) -> k8s_openapi::api::core::v1::Service {
    super::common::service::service(&d.workload)
}

/// What the selected nodes must write: each upstream host pulls through the mirror at its
/// ClusterIP (nodes cannot resolve cluster DNS; kube-proxy makes the ClusterIP reachable
/// from node processes), with the upstream kept as the fallback. `None` until the Service
/// has a ClusterIP.
pub fn node_plan(
    mirror: &RegistryMirror,
    d: &Desired,
    addresses: &Addresses,
    ca_pem: Option<String>,
) -> Option<NodePlan> {
    let ip = addresses.cluster_ip?;
    let plain_http = matches!(d.workload.tls, TlsMode::Disabled);
    let scheme = if plain_http { "http" } else { "https" };
    let authority = match ip {
        std::net::IpAddr::V6(v6) => format!("[{v6}]:{}", addresses.port),
        std::net::IpAddr::V4(v4) => format!("{v4}:{}", addresses.port),
    };
    let selection = &d.nodes.selection;
    Some(NodePlan {
        owner: owner_key(mirror),
        node_selector: selection.node_selector.clone(),
        tolerations: selection.tolerations.clone(),
        entries: d
            .upstreams
            .iter()
            .map(|u| PlanEntry {
                host: u.host.clone(),
                server: Some(u.url.clone()),
                mirror: Some(format!("{scheme}://{authority}")),
                plain_http,
                ca_pem: ca_pem.clone(),
                runtimes: selection.runtimes.iter().copied().collect(),
                fallback: d.nodes.fallback,
            })
            .collect(),
        published_hash: None,
    })
}

/// `Kind/namespace/name`: how plans and reports name a resource.
pub fn owner_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

/// The mirror's status for `outcome`.
fn status(
    mirror: &RegistryMirror,
    d: &Desired,
    outcome: &Outcome<'_>,
    ca_secret: Option<String>,
    nodes: Option<NodesStatus>,
    now: Timestamp,
) -> RegistryMirrorStatus {
    let previous = mirror.status.clone().unwrap_or_default();
    let generation = mirror.meta().generation;
    let (mut conditions, ready) =
        common_status::conditions(outcome, &previous.conditions, generation, now);
    if let Some(n) = &nodes {
        conditions = common_status::keep_transition_times(
            conditions
                .into_iter()
                .chain([nodes::condition(n, generation)])
                .collect(),
            &previous.conditions,
            now,
        );
    }
    let upstreams = Some(
        d.upstreams
            .iter()
            .map(|u| u.host.as_str())
            .collect::<Vec<_>>()
            .join(","),
    );
    match outcome {
        Outcome::Invalid { .. } => RegistryMirrorStatus {
            conditions: common_status::keep_nodes_condition(conditions, &previous.conditions),
            observed_generation: generation,
            ..previous
        },
        Outcome::Applied { endpoint, .. } => RegistryMirrorStatus {
            conditions,
            observed_generation: generation,
            endpoint: Some(endpoint.clone()),
            ready_replicas: ready,
            ca_secret,
            upstreams,
            nodes,
        },
    }
}

async fn publish_transitions(ctx: &Context, mirror: &RegistryMirror, next: &RegistryMirrorStatus) {
    let before = mirror
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    if let Some((type_, reason, note)) = common_status::transition(&before, &next.conditions) {
        publish_on(&ctx.recorder, &mirror.object_ref(&()), type_, reason, note).await;
    }
}

/// A spec that cannot be reconciled as written: Degraded status and a Warning Event saying
/// why; retried after five minutes (or as soon as the mirror or a Secret it names changes).
async fn report_invalid(
    ctx: &Context,
    mirror: &RegistryMirror,
    invalid: Invalid,
) -> Result<Action, Error> {
    let outcome = Outcome::Invalid {
        reason: invalid.reason,
        message: invalid.message.clone(),
    };
    let previous = mirror.status.clone().unwrap_or_default();
    let generation = mirror.meta().generation;
    let (conditions, _) =
        common_status::conditions(&outcome, &previous.conditions, generation, Timestamp::now());
    let conditions = common_status::keep_nodes_condition(conditions, &previous.conditions);
    let next = RegistryMirrorStatus {
        conditions,
        observed_generation: generation,
        ..previous
    };
    publish_on(
        &ctx.recorder,
        &mirror.object_ref(&()),
        EventType::Warning,
        invalid.reason,
        invalid.message,
    )
    .await;
    common_status::write(&ctx.client, mirror, mirror.status.as_ref(), &next).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Retries a failed reconcile after a delay that doubles with each consecutive failure.
pub fn error_policy(mirror: &RegistryMirror, error: &Error, ctx: &Context) -> Action {
    ctx.retry(KIND, mirror, error)
}
