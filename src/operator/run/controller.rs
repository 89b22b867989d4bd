//! The controllers' wiring, one per kind (`Registry`, `RegistryMirror`), run side by side:
//! which objects each watches (owned children by label; every Secret mapped back to the
//! resources that name it or whose child it is; the kept claim and the workload pods by
//! their instance label; for node configuration, the Nodes and the node agents' report
//! Leases) and the span each reconcile runs in. `run` starts them once per leadership term;
//! the reconcile logic, its metrics and its error policy live in each kind's module.
//!
//! Resources are watched through [`DeserializeGuard`]: one stored object that does not fit
//! the Rust types (an older or hand-loosened CRD let it in) is logged and reported with a
//! Warning Event, and the others are reconciled as usual instead of the whole watch failing.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Node, ObjectReference, PersistentVolumeClaim, Pod, Secret, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::operator::common::{INSTANCE_LABEL, MANAGED_BY, NAME_LABEL};
use crate::operator::crd::{Registry, RegistryMirror};
use crate::operator::health::{Health, Role};
use crate::operator::nodeplan::{REPORT_ANNOTATION, REPORT_LABEL};
use crate::operator::{Context, Error, mirror, registry};

/// The label every child object carries; the owned watches select on it, so the operator
/// caches its own objects only, never every Deployment or Secret of the cluster.
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=dockyard";

/// A kind the operator reconciles.
pub trait Kind:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// `app.kubernetes.io/name` of its children.
    const APP: &'static str;
    /// Names of the Secrets in its namespace its spec refers to.
    fn referenced_secrets(&self) -> Vec<String>;
    /// Whether it asks for node configuration (and so depends on Nodes and node reports).
    fn wants_nodes(&self) -> bool;
    fn reconcile(object: Arc<Self>, ctx: Arc<Context>)
    -> BoxFuture<'static, Result<Action, Error>>;
    fn error_policy(&self, error: &Error, ctx: &Context) -> Action;
}

impl Kind for Registry {
    const APP: &'static str = registry::validate::APP;
    fn referenced_secrets(&self) -> Vec<String> {
        registry::referenced_secrets(self)
    }
    fn wants_nodes(&self) -> bool {
        self.spec.node_trust
    }
    fn reconcile(
        object: Arc<Self>,
        ctx: Arc<Context>,
    ) -> BoxFuture<'static, Result<Action, Error>> {
        Box::pin(registry::reconcile(object, ctx))
    }
    fn error_policy(&self, error: &Error, ctx: &Context) -> Action {
        registry::error_policy(self, error, ctx)
    }
}

impl Kind for RegistryMirror {
    const APP: &'static str = mirror::validate::APP;
    fn referenced_secrets(&self) -> Vec<String> {
        mirror::validate::referenced_secrets(self)
    }
    fn wants_nodes(&self) -> bool {
        self.spec.nodes.enabled
    }
    fn reconcile(
        object: Arc<Self>,
        ctx: Arc<Context>,
    ) -> BoxFuture<'static, Result<Action, Error>> {
        Box::pin(mirror::reconcile(object, ctx))
    }
    fn error_policy(&self, error: &Error, ctx: &Context) -> Action {
        mirror::error_policy(self, error, ctx)
    }
}

/// Runs one controller per kind until `stop` is cancelled, then lets in-flight reconciles
/// finish. Marks the instance [`Role::Leading`] once Registries can be listed.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    health: Arc<Health>,
    stop: CancellationToken,
) {
    // Not `store.wait_until_ready()`: its one-shot channel keeps a single waker, so a
    // second waiter can leave the controller's own wait (or this one) never woken.
    let ready = tokio::spawn(lead_when_listable(
        api::<Registry>(&ctx.client, namespace),
        health,
        stop.clone(),
    ));
    let orphans = tokio::spawn(collect_orphans(ctx.clone(), stop.clone()));
    futures::join!(
        run_kind::<Registry>(ctx.clone(), namespace, stop.clone()),
        run_kind::<RegistryMirror>(ctx.clone(), namespace, stop),
    );
    orphans.abort();
    ready.abort();
    tracing::info!("controllers stopped");
}

/// Runs the controller of `K`.
async fn run_kind<K: Kind>(ctx: Arc<Context>, namespace: Option<&str>, stop: CancellationToken) {
    let client = &ctx.client;
    // A controller whose resource cannot be listed holds its runner until it can, and would
    // not stop on shutdown: start it only once the kind is served and readable.
    if !wait_listable(api::<K>(client, namespace), &stop).await {
        return;
    }
    let owned = || watcher::Config::default().labels(MANAGED_BY_SELECTOR);
    let controller = Controller::new(
        api::<DeserializeGuard<K>>(client, namespace),
        Default::default(),
    );
    let store = controller.store();
    let for_secrets = store.clone();
    let for_nodes = store.clone();
    let for_reports = store;
    let reports: Api<Lease> = Api::namespaced(client.clone(), &ctx.node_namespace);
    let seen = SeenReports::default();
    controller
        .owns(api::<Deployment>(client, namespace), owned())
        .owns(api::<Service>(client, namespace), owned())
        .owns(api::<ConfigMap>(client, namespace), owned())
        .owns(api::<PodDisruptionBudget>(client, namespace), owned())
        // The claim is kept when its resource goes, so it has no owner reference.
        .watches(
            api::<PersistentVolumeClaim>(client, namespace),
            owned(),
            |claim| instance_of::<K, _>(&claim),
        )
        // Workload pods belong to ReplicaSets; the scheduler's verdict is in their status.
        .watches(api::<Pod>(client, namespace), owned(), |pod| {
            instance_of::<K, _>(&pod)
        })
        .watches(
            api::<Secret>(client, namespace),
            watcher::Config::default(),
            move |secret| {
                let typed = typed(&for_secrets);
                let mut refs: Vec<ObjectRef<DeserializeGuard<K>>> = referencing(&secret, &typed)
                    .into_iter()
                    .map(guarded)
                    .collect();
                // Its own Secrets too, including the CA it keeps without an owner reference.
                refs.extend(instance_of::<K, _>(&secret));
                refs
            },
        )
        // A node joins, leaves or is relabelled: the node counts of everything with nodes.
        .watches(
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            move |_: Node| wanting_nodes(&for_nodes),
        )
        // Heartbeats renew the Leases; only a changed report is worth a reconcile (one that
        // stops renewing is noticed by the periodic requeue).
        .watches(
            reports,
            watcher::Config::default().labels(&format!("{REPORT_LABEL}=true")),
            move |lease: Lease| {
                if seen.changed(&lease) {
                    wanting_nodes(&for_reports)
                } else {
                    Vec::new()
                }
            },
        )
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(reconcile::<K>, error_policy::<K>, ctx.clone())
        .for_each(|result| async move { log_outcome(result) })
        .await;
    tracing::info!(kind = %K::kind(&()), "controller stopped");
}

/// The last report seen per node Lease, so that a renewal alone triggers nothing.
#[derive(Default)]
struct SeenReports(std::sync::Mutex<std::collections::HashMap<String, String>>);

impl SeenReports {
    /// Whether `lease` carries a report other than the last one seen for it.
    fn changed(&self, lease: &Lease) -> bool {
        let report = lease
            .annotations()
            .get(REPORT_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert(lease.name_any(), report.clone()).as_ref() != Some(&report)
    }
}

/// The typed objects in `store` (those that parse).
fn typed<K: Kind>(store: &Store<DeserializeGuard<K>>) -> Vec<Arc<K>> {
    store
        .state()
        .iter()
        .filter_map(|r| r.0.as_ref().ok().cloned().map(Arc::new))
        .collect()
}

fn guarded<K: Kind>(r: ObjectRef<K>) -> ObjectRef<DeserializeGuard<K>> {
    let g = ObjectRef::new(&r.name);
    match &r.namespace {
        Some(ns) => g.within(ns),
        None => g,
    }
}

/// Every object in `store` that asks for node configuration.
fn wanting_nodes<K: Kind>(
    store: &Store<DeserializeGuard<K>>,
) -> Vec<ObjectRef<DeserializeGuard<K>>> {
    typed(store)
        .into_iter()
        .filter(|o| o.wants_nodes())
        .map(|o| guarded(ObjectRef::from_obj(o.as_ref())))
        .collect()
}

/// Deletes node plans left by resources that are gone, a minute after the controllers start
/// and every ten minutes after that, while this instance leads.
async fn collect_orphans(ctx: Arc<Context>, stop: CancellationToken) {
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        match crate::operator::nodes::collect_orphans(&ctx.client, &ctx.node_namespace).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                plans = n,
                "deleted the node plans of resources that are gone"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot look for orphaned node plans"),
        }
        wait = Duration::from_secs(600);
    }
}

/// Waits until a one-item list of `K` succeeds (its CRD is installed and RBAC allows it),
/// retrying with backoff and saying what to fix; `false` when `stop` came first.
async fn wait_listable<K: Kind>(api: Api<K>, stop: &CancellationToken) -> bool {
    let mut delay = Duration::from_millis(500);
    loop {
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => return true,
            Err(kube::Error::Api(e)) if e.code == 404 => tracing::warn!(
                kind = %K::kind(&()),
                retry_in = ?delay,
                "the {} CustomResourceDefinition is not installed: apply crds/dockyard.dev.yaml (helm upgrade does not update CRDs); its controller starts once it is",
                K::plural(&()),
            ),
            Err(e) => {
                tracing::warn!(kind = %K::kind(&()), error = %e, retry_in = ?delay, "cannot list this kind yet")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => delay = (delay * 2).min(Duration::from_secs(30)),
            () = stop.cancelled() => return false,
        }
    }
}

/// Marks the instance [`Role::Leading`] once a one-item list of Registries succeeds (the CRD
/// is served and RBAC allows it), retrying with backoff until then or until `stop`.
async fn lead_when_listable(api: Api<Registry>, health: Arc<Health>, stop: CancellationToken) {
    let mut delay = Duration::from_millis(500);
    loop {
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => {
                tracing::info!("Registries are listable: controllers running");
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

/// Runs the kind's reconcile (which counts and times itself; `error_policy` counts failures)
/// inside the controller's "reconciling object" span, so every line the reconcile logs names
/// the object and why it was reconciled.
fn reconcile<K: Kind>(
    guarded: Arc<DeserializeGuard<K>>,
    ctx: Arc<Context>,
) -> impl Future<Output = Result<Action, Error>> + Send + 'static {
    let span = tracing::Span::current();
    async move {
        tracing::debug!("reconcile started");
        match &guarded.0 {
            Ok(object) => K::reconcile(Arc::new(object.clone()), ctx).await,
            Err(invalid) => {
                report_unreadable::<K>(invalid, &ctx).await;
                Ok(Action::await_change())
            }
        }
    }
    .instrument(span)
}

/// A stored object that does not parse: logged, and a Warning Event on it; it waits for
/// its next change.
async fn report_unreadable<K: Kind>(invalid: &InvalidObject, ctx: &Context) {
    let meta = &invalid.metadata;
    let kind = K::kind(&());
    tracing::warn!(error = %invalid.error, "cannot read this {kind}; fix its spec");
    let object = ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(kind.clone().into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..ObjectReference::default()
    };
    let note = format!(
        "the operator cannot read this {kind}, so nothing is reconciled until it is fixed: {}",
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

fn error_policy<K: Kind>(
    guarded: Arc<DeserializeGuard<K>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    match &guarded.0 {
        Ok(object) => object.error_policy(error, &ctx),
        Err(_) => {
            ctx.metrics.failure(&K::kind(&()), error);
            Action::requeue(
                ctx.backoff
                    .failed(&crate::operator::context::object_key(guarded.as_ref())),
            )
        }
    }
}

/// The `K` named by the instance label of `object`, in its namespace, when Dockyard manages
/// it as a child of that kind.
fn instance_of<K: Kind, O: Resource>(object: &O) -> Option<ObjectRef<DeserializeGuard<K>>> {
    let labels = object.meta().labels.as_ref()?;
    if labels.get(MANAGED_BY.0).map(String::as_str) != Some(MANAGED_BY.1)
        || labels.get(NAME_LABEL).map(String::as_str) != Some(K::APP)
    {
        return None;
    }
    let name = labels.get(INSTANCE_LABEL)?;
    let namespace = object.meta().namespace.as_deref()?;
    Some(ObjectRef::new(name).within(namespace))
}

/// The objects in the Secret's namespace whose spec names the Secret.
pub fn referencing<K: Kind>(secret: &Secret, objects: &[Arc<K>]) -> Vec<ObjectRef<K>> {
    let name = secret.name_any();
    let namespace = secret.namespace();
    objects
        .iter()
        .filter(|r| r.namespace() == namespace)
        .filter(|r| r.referenced_secrets().contains(&name))
        .map(|r| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

type RunResult<K> =
    Result<(ObjectRef<DeserializeGuard<K>>, Action), controller::Error<Error, watcher::Error>>;

fn log_outcome<K: Kind>(result: RunResult<K>) {
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
            names(referencing(&secret("team-a", "alice-pw"), &registries)),
            ["team-a/one", "team-a/four"]
        );
        assert_eq!(
            names(referencing(&secret("team-b", "alice-pw"), &registries)),
            ["team-b/three"]
        );
        assert!(referencing(&secret("team-a", "other"), &registries).is_empty());
        assert!(referencing(&secret("team-c", "alice-pw"), &registries).is_empty());
    }
}
