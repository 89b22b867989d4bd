//! The Registry controller's wiring: which objects it watches (owned children by label, every
//! Secret mapped back to the Registries that name it) and the span each reconcile runs in.
//! `run` starts one controller per leadership term; the reconcile logic, its metrics and its
//! error policy live in `operator::registry`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use kube::api::ListParams;
use kube::runtime::controller::{self, Action, Controller};
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
    let controller = Controller::new(api::<Registry>(client, namespace), Default::default());
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
        .owns(api::<Secret>(client, namespace), owned())
        .owns(api::<PersistentVolumeClaim>(client, namespace), owned())
        .watches(
            api::<Secret>(client, namespace),
            watcher::Config::default(),
            move |secret| registries_referencing(&secret, &registries.state()),
        )
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(reconcile, registry::error_policy, ctx.clone())
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
    registry: Arc<Registry>,
    ctx: Arc<Context>,
) -> impl Future<Output = Result<Action, Error>> + Send + 'static {
    let span = tracing::Span::current();
    async move {
        tracing::debug!("reconcile started");
        registry::reconcile(registry, ctx).await
    }
    .instrument(span)
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

type RunResult = Result<(ObjectRef<Registry>, Action), controller::Error<Error, watcher::Error>>;

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
