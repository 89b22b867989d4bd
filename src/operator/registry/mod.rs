//! Reconciles a `Registry`: fetch -> validate -> build -> apply -> status.
//!
//! Only `fetch`, `apply` and `status` talk to the API server; `validate`, `build` and the
//! status computation are pure and tested with complete expected objects. The Service is
//! applied first: the address the API server allocates for it goes into the serving
//! certificate and the pull Secrets. Status is computed from the objects as apply returned
//! them, never from a read made before the apply.

mod apply;
pub mod build;
mod fetch;
pub mod materials;
mod status;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::{Resource, ResourceExt};

use super::common::apply::sync_finalizers;
use super::common::fetch as common_fetch;
use super::common::status::{self as common_status, Outcome, publish_on};
use super::common::{Addresses, status::claim_grace_left, tls};
use super::crd::Registry;
use super::nodeplan::{NodePlan, PLAN_FINALIZER, PlanEntry};
use super::nodes;
use super::{Context, Error};
use apply::PULL_SECRETS_FINALIZER;
use kube::Api;
use validate::Invalid;

/// Reconciles one Registry; a success resets its retry delay.
#[tracing::instrument(skip(registry, ctx), fields(name = %registry.name_any(), namespace = registry.namespace().unwrap_or_default()))]
pub async fn reconcile(registry: Arc<Registry>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.reconciling(KIND, registry.as_ref(), run(&registry, &ctx))
        .await
}

async fn run(registry: &Registry, ctx: &Context) -> Result<Action, Error> {
    let client = &ctx.client;
    let namespace = registry.namespace().ok_or(Error::NoNamespace)?;
    if registry.meta().deletion_timestamp.is_some() {
        // Owner references remove the rest; pull Secrets elsewhere are ours to delete.
        let uid = registry.uid().unwrap_or_default();
        apply::remove_stale_pull_secrets(client, &uid, &[], "").await?;
        nodes::withdraw(client, &ctx.node_namespace, KIND, &uid).await?;
        let none = [(PULL_SECRETS_FINALIZER, false), (PLAN_FINALIZER, false)];
        sync_finalizers(client, registry, &none).await?;
        return Ok(Action::await_change());
    }
    let secrets = common_fetch::secrets(client, &namespace, referenced_secrets(registry)).await?;
    let desired = match validate::validate(registry, &secrets, &ctx.image) {
        Ok(d) => d,
        Err(invalid) => return report_invalid(ctx, registry, invalid).await,
    };
    let w = &desired.workload;
    if let Some(invalid) = super::common::apply::name_conflict(client, w).await? {
        return report_invalid(ctx, registry, invalid).await;
    }
    let existing = fetch::existing(client, w).await?;
    // Finalizers come before what they guard (pull Secrets in other namespaces, the node
    // plan), and go only after it is cleaned up.
    let foreign = desired.pull_namespaces.iter().any(|ns| ns != &namespace);
    let trust = registry.spec.node_trust;
    let mut latest = registry.clone();
    let before = [(PULL_SECRETS_FINALIZER, true), (PLAN_FINALIZER, true)];
    let adds: Vec<_> = before
        .into_iter()
        .zip([foreign, trust])
        .filter(|(_, wanted)| *wanted)
        .map(|(f, _)| f)
        .collect();
    if let Some(patched) = sync_finalizers(client, &latest, &adds).await? {
        latest = patched;
    }
    let service = match super::common::apply::apply(client, &build::service(&desired)).await {
        Err(Error::Kube(kube::Error::Api(e))) if e.code == 422 => {
            let invalid = super::common::validate::service_invalid(&e.message);
            return report_invalid(ctx, registry, invalid).await;
        }
        other => other?,
    };
    let addresses = Addresses::of(w, &service);
    let now = Timestamp::now().as_second();
    // bcrypt and key generation are CPU work: keep them off the async workers.
    let prepared = tokio::task::block_in_place(|| {
        materials::prepare(&desired, &addresses, &existing, now, &ctx.verified)
    });
    let materials = match prepared {
        Ok(m) => m,
        Err(e) => {
            let invalid = Invalid {
                reason: "CertificateError",
                message: e.to_string(),
            };
            return report_invalid(ctx, registry, invalid).await;
        }
    };
    let children = build::build(&desired, &addresses, &materials);
    // Boxed: the apply future is large (unboxed, a debug build overflowed a 2 MiB stack).
    let applied = Box::pin(apply::apply_all(client, &desired, &children)).await?;
    let ca_pem = match &materials.self_signed {
        Some(m) => Some(m.ca.cert_pem.clone()),
        None => tls::fetch_ca(&Api::namespaced(client.clone(), &namespace), w).await?,
    };
    let plan = trust
        .then(|| node_plan(registry, &desired, &addresses, ca_pem))
        .flatten();
    let others = [(PULL_SECRETS_FINALIZER, foreign)];
    let node_status = nodes::publish_and_count(
        client,
        &ctx.node_namespace,
        w,
        &latest,
        plan.as_ref(),
        &others,
    )
    .await?;
    let pods = common_fetch::pods(client, &namespace, &w.children_selector()).await?;
    let now = Timestamp::now();
    let outcome = Outcome::Applied {
        deployment: &applied.deployment,
        wanted: w.replicas,
        endpoint: addresses.endpoint(),
        warning: applied.certificate.warning(),
        waiting: common_status::waiting(applied.volume.as_ref(), &pods, now),
    };
    let found = status::Found {
        ca_secret: w.ca_secret(),
        storage: desired.storage_location(),
        nodes: node_status,
    };
    let next = status::compute(registry, &outcome, Some(found), now);
    let before = registry.status.as_ref().map(|s| &s.conditions[..]);
    if let Some((type_, reason, note)) =
        common_status::transition(before.unwrap_or_default(), &next.conditions)
    {
        publish(&ctx.recorder, registry, type_, reason, note).await;
    }
    common_status::write(client, registry, registry.status.as_ref(), &next).await?;
    // A claim still in its grace is looked at again when the grace ends (its binding, if it
    // comes first, triggers a reconcile of its own).
    // With node trust, an agent that stops reporting is noticed by this timer.
    let idle = if plan.is_some() { 60 } else { 3600 };
    let recheck = (applied.volume.as_ref())
        .and_then(|claim| claim_grace_left(claim, now))
        .map_or(Duration::from_secs(idle), |left| {
            left + Duration::from_secs(1)
        });
    Ok(Action::requeue(recheck))
}

pub const KIND: &str = "Registry";

/// What `nodeTrust` asks of the selected nodes: trust the registry's CA at each address
/// nodes can use (its ClusterIP, reachable from node processes through kube-proxy, and the
/// spec's external hosts). `None` until the Service has a ClusterIP.
pub fn node_plan(
    registry: &Registry,
    d: &validate::Desired,
    addresses: &Addresses,
    ca_pem: Option<String>,
) -> Option<NodePlan> {
    addresses.cluster_ip?;
    let plain_http = matches!(d.workload.tls, crate::operator::crd::TlsMode::Disabled);
    let scheme = if plain_http { "http" } else { "https" };
    let selection = registry.spec.nodes.clone().unwrap_or_default();
    let entries = addresses
        .hosts()
        .into_iter()
        // Nodes resolve names with the host's resolver: cluster DNS names are no use there.
        .filter(|h| !h.contains(".svc"))
        .map(|host| PlanEntry {
            server: Some(format!("{scheme}://{host}")),
            host,
            mirror: None,
            plain_http,
            ca_pem: ca_pem.clone(),
            runtimes: selection.runtimes.iter().copied().collect(),
            fallback: false,
        })
        .collect();
    Some(NodePlan {
        owner: super::mirror::owner_key(registry),
        node_selector: selection.node_selector,
        tolerations: selection.tolerations,
        entries,
        published_hash: None,
    })
}

/// A spec that cannot be reconciled as written: Degraded status and a Warning Event saying
/// why; retried after five minutes (or as soon as the Registry or a Secret it names changes).
async fn report_invalid(
    ctx: &Context,
    registry: &Registry,
    invalid: Invalid,
) -> Result<Action, Error> {
    let outcome = Outcome::Invalid {
        reason: invalid.reason,
        message: invalid.message.clone(),
    };
    let next = status::compute(registry, &outcome, None, Timestamp::now());
    publish(
        &ctx.recorder,
        registry,
        EventType::Warning,
        invalid.reason,
        invalid.message,
    )
    .await;
    common_status::write(&ctx.client, registry, registry.status.as_ref(), &next).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn publish(
    recorder: &Recorder,
    registry: &Registry,
    type_: EventType,
    reason: &str,
    note: String,
) {
    publish_on(recorder, &registry.object_ref(&()), type_, reason, note).await;
}

/// Retries a failed reconcile after a delay that doubles with each consecutive failure
/// (and starts over after a success).
pub fn error_policy(registry: &Registry, error: &Error, ctx: &Context) -> Action {
    ctx.retry(KIND, registry, error)
}

/// Names of the Secrets in the Registry's namespace that its spec refers to; a change to
/// any of them must reconcile the Registry again.
pub fn referenced_secrets(registry: &Registry) -> Vec<String> {
    let spec = &registry.spec;
    let mut names: Vec<String> = spec
        .auth
        .users
        .iter()
        .map(|u| u.password_secret_ref.name.clone())
        .collect();
    names.extend(spec.auth.htpasswd_secret_ref.iter().map(|r| r.name.clone()));
    names.extend(spec.tls.secret_ref.iter().map(|r| r.name.clone()));
    names.extend(spec.storage.s3.iter().flat_map(|s| {
        (s.credentials_secret_ref.iter().map(|r| r.name.clone()))
            .chain(s.ca_secret_ref.iter().map(|r| r.name.clone()))
    }));
    names.sort();
    names.dedup();
    names
}
