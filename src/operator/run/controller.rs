//! The Registry controller's wiring: which objects it watches (owned children by label; every
//! Secret mapped back to the Registries that name it or whose child it is; the kept claim and
//! the registry pods by their instance label) and the span each reconcile runs in. `run`
//! starts one controller per leadership term; the reconcile logic, its metrics and its error
//! policy live in `operator::registry`.
//!
//! Registries are watched through [`DeserializeGuard`]: one stored object that does not fit
//! the Rust types (an older or hand-loosened CRD let it in) is logged and reported with a
//! Warning Event, and the others are reconciled as usual instead of the whole watch failing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, ObjectReference, PersistentVolumeClaim, Pod, Secret, Service,
};
use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::operator::crd::Registry;
use crate::operator::health::{Health, Role};
use crate::operator::registry::{self, referenced_secrets};
use crate::operator::{Context, Error};

/// The label every child object carries; the owned watches select on it, so the operator
/// caches its own objects only, never every Deployment or Secret of the cluster.
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=dockyard";

/// The label naming the Registry a child (or a registry pod) belongs to.
const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// A Registry as the watch delivers it: typed, or the metadata of one that does not parse.
type Guarded = DeserializeGuard<Registry>;

/// Runs the Registry controller until `stop` is cancelled, then lets in-flight reconciles
/// finish. Marks the instance [`Role::Leading`] once Registries can be listed.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    health: Arc<Health>,
    stop: CancellationToken,
) {
    let client = &ctx.client;
    let owned = || watcher::Config::default().labels(MANAGED_BY_SELECTOR);
    let controller = Controller::new(api::<Guarded>(client, namespace), Default::default());
    let registries = controller.store();
    // Not `registries.wait_until_ready()`: its one-shot channel keeps a single waker, so a
    // second waiter can leave the controller's own wait (or this one) never woken.
    let ready = tokio::spawn(lead_when_listable(
        api::<Registry>(client, namespace),
        health,
        stop.clone(),
    ));
    controller
        .owns(api::<Deployment>(client, namespace), owned())
        .owns(api::<Service>(client, namespace), owned())
        .owns(api::<ConfigMap>(client, namespace), owned())
        // The claim is kept when its Registry goes, so it has no owner reference.
        .watches(
            api::<PersistentVolumeClaim>(client, namespace),
            owned(),
            |claim| instance_of(&claim),
        )
        // Registry pods belong to ReplicaSets; the scheduler's verdict is in their status.
        .watches(api::<Pod>(client, namespace), owned(), |pod| {
            instance_of(&pod)
        })
        .watches(
            api::<Secret>(client, namespace),
            watcher::Config::default(),
            move |secret| {
                let typed: Vec<Arc<Registry>> = registries
                    .state()
                    .iter()
                    .filter_map(|r| r.0.as_ref().ok().cloned().map(Arc::new))
                    .collect();
                let mut refs: Vec<ObjectRef<Guarded>> = registries_referencing(&secret, &typed)
                    .into_iter()
                    .map(|r| {
                        let guarded = ObjectRef::new(&r.name);
                        match &r.namespace {
                            Some(ns) => guarded.within(ns),
                            None => guarded,
                        }
                    })
                    .collect();
                // Its own Secrets too, including the CA it keeps without an owner reference.
                refs.extend(instance_of(&secret));
                refs
            },
        )
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| async move { log_outcome(result) })
        .await;
    ready.abort();
    tracing::info!("controller stopped");
}

/// Marks the instance [`Role::Leading`] once a one-item list of Registries succeeds (the CRD
/// is served and RBAC allows it), retrying with backoff until then or until `stop`.
async fn lead_when_listable(api: Api<Registry>, health: Arc<Health>, stop: CancellationToken) {
    let mut delay = Duration::from_millis(500);
    loop {
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => {
                tracing::info!("Registries are listable: controller running");
                health.set(Role::Leading);
                return;
            }
            Err(e) => tracing::warn!(error = %e, retry_in = ?delay, "cannot list Registries"),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => delay = (delay * 2).min(Duration::from_secs(30)),
            () = stop.cancelled() => return,
        }
    }
}

/// Runs `registry::reconcile` (which counts and times itself; `error_policy` counts failures)
/// inside the controller's "reconciling object" span, so every line the reconcile logs names
/// the object and why it was reconciled.
fn reconcile(
    guarded: Arc<Guarded>,
    ctx: Arc<Context>,
) -> impl Future<Output = Result<Action, Error>> + Send + 'static {
    let span = tracing::Span::current();
    async move {
        tracing::debug!("reconcile started");
        match &guarded.0 {
            Ok(registry) => registry::reconcile(Arc::new(registry.clone()), ctx).await,
            Err(invalid) => {
                report_unreadable(invalid, &ctx).await;
                Ok(Action::await_change())
            }
        }
    }
    .instrument(span)
}

/// A stored Registry that does not parse: logged, and a Warning Event on it; it waits for
/// its next change.
async fn report_unreadable(invalid: &InvalidObject, ctx: &Context) {
    let meta = &invalid.metadata;
    tracing::warn!(error = %invalid.error, "cannot read this Registry; fix its spec");
    let object = ObjectReference {
        api_version: Some(Registry::api_version(&()).into_owned()),
        kind: Some(Registry::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..ObjectReference::default()
    };
    let note = format!(
        "the operator cannot read this Registry, so nothing is reconciled until it is fixed: {}",
        invalid.error
    );
    crate::operator::common::status::publish_on(
        &ctx.recorder,
        &object,
        EventType::Warning,
        "InvalidSpec",
        note,
    )
    .await;
}

fn error_policy(guarded: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    match &guarded.0 {
        Ok(registry) => registry::error_policy(registry, error, &ctx),
        Err(_) => {
            ctx.metrics.failure("Registry", error);
            Action::requeue(ctx.backoff.failed(&registry::object_key(guarded.as_ref())))
        }
    }
}

/// The Registry named by the instance label of `object`, in its namespace, when Dockyard
/// manages it.
fn instance_of<K: Resource>(object: &K) -> Option<ObjectRef<Guarded>> {
    let labels = object.meta().labels.as_ref()?;
    let (key, value) = MANAGED_BY_SELECTOR.split_once('=')?;
    if labels.get(key).map(String::as_str) != Some(value) {
        return None;
    }
    let name = labels.get(INSTANCE_LABEL)?;
    let namespace = object.meta().namespace.as_deref()?;
    Some(ObjectRef::new(name).within(namespace))
}

/// The Registries in the Secret's namespace whose spec names the Secret.
pub fn registries_referencing(
    secret: &Secret,
    registries: &[Arc<Registry>],
) -> Vec<ObjectRef<Registry>> {
    let name = secret.name_any();
    let namespace = secret.namespace();
    registries
        .iter()
        .filter(|r| r.namespace() == namespace)
        .filter(|r| referenced_secrets(r).contains(&name))
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

type RunResult = Result<(ObjectRef<Guarded>, Action), controller::Error<Error, watcher::Error>>;

fn log_outcome(result: RunResult) {
    match result {
        Ok((object, _)) => tracing::debug!(%object, "reconciled"),
        // error_policy has logged and counted it already.
        Err(controller::Error::ReconcilerFailed(_, object)) => {
            tracing::debug!(%object, "reconcile failed")
        }
        Err(controller::Error::ObjectNotFound(object)) => {
            tracing::debug!(%object, "object gone before its reconcile")
        }
        Err(e) => tracing::warn!(error = %e, "controller watch error"),
    }
}

fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn registry(namespace: &str, name: &str, spec: serde_json::Value) -> Arc<Registry> {
        let object = json!({
            "apiVersion": "dockyard.dev/v1alpha1",
            "kind": "Registry",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        });
        Arc::new(serde_json::from_value(object).expect("valid Registry"))
    }

    fn secret(namespace: &str, name: &str) -> Secret {
        let mut secret = Secret::default();
        secret.metadata.name = Some(name.to_owned());
        secret.metadata.namespace = Some(namespace.to_owned());
        secret
    }

    #[test]
    fn a_secret_maps_to_the_registries_in_its_namespace_that_name_it() {
        let with_user = json!({"auth": {"users": [
            {"username": "alice", "passwordSecretRef": {"name": "alice-pw", "key": "password"}}
        ]}});
        let registries = [
            registry("team-a", "one", with_user.clone()),
            registry("team-a", "two", json!({})),
            registry("team-b", "three", with_user),
            registry(
                "team-a",
                "four",
                json!({"tls": {"secretRef": {"name": "alice-pw"}}}),
            ),
        ];
        let names = |refs: Vec<ObjectRef<Registry>>| -> Vec<String> {
            refs.into_iter()
                .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
                .collect()
        };
        assert_eq!(
            names(registries_referencing(
                &secret("team-a", "alice-pw"),
                &registries
            )),
            ["team-a/one", "team-a/four"]
        );
        assert_eq!(
            names(registries_referencing(
                &secret("team-b", "alice-pw"),
                &registries
            )),
            ["team-b/three"]
        );
        assert!(registries_referencing(&secret("team-a", "other"), &registries).is_empty());
        assert!(registries_referencing(&secret("team-c", "alice-pw"), &registries).is_empty());
    }
}
