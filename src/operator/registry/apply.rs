//! Server-side apply of every built child under one field manager, removal of pull
//! Secrets no longer wanted, and the finalizer that guards pull Secrets in other
//! namespaces (which owner references cannot reach).

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::build::{Children, PULL_SECRET_LABEL};
use super::validate::Desired;
use crate::operator::crd::Registry;
use crate::operator::{Error, MANAGER};

/// Finalizer present while pull Secrets exist outside the Registry's namespace.
pub const PULL_SECRETS_FINALIZER: &str = "dockyard.dev/pull-secrets";

async fn apply<K>(client: &kube::Client, object: &K) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let namespace = object.meta().namespace.clone().ok_or(Error::NoNamespace)?;
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    api.patch(
        &object.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await?;
    Ok(())
}

/// Outcome of applying the cert-manager Certificate.
pub enum CertificateOutcome {
    NotWanted,
    Applied,
    /// cert-manager's CRD is not installed.
    Missing,
}

pub async fn apply_all(
    client: &kube::Client,
    d: &Desired,
    children: &Children,
) -> Result<CertificateOutcome, Error> {
    let Children {
        config,
        htpasswd,
        pull_credentials,
        ca,
        tls,
        certificate,
        service,
        volume,
        deployment,
        pull_secrets,
    } = children;
    apply(client, config).await?;
    apply(client, pull_credentials).await?;
    for secret in [htpasswd, ca, tls].into_iter().flatten() {
        apply(client, secret).await?;
    }
    let outcome = match certificate {
        None => CertificateOutcome::NotWanted,
        Some(cert) => apply_certificate(client, d, cert).await?,
    };
    apply(client, service).await?;
    apply(client, volume).await?;
    apply(client, deployment).await?;
    for secret in pull_secrets {
        apply(client, secret).await?;
    }
    remove_stale_pull_secrets(client, &d.owner.uid, &d.pull_namespaces).await?;
    Ok(outcome)
}

async fn apply_certificate(
    client: &kube::Client,
    d: &Desired,
    cert: &DynamicObject,
) -> Result<CertificateOutcome, Error> {
    let resource = super::build::certificate_resource();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &d.namespace, &resource);
    match api
        .patch(
            &d.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(cert),
        )
        .await
    {
        Ok(_) => Ok(CertificateOutcome::Applied),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(CertificateOutcome::Missing),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the pull Secrets of the Registry with `uid` outside `keep` (all for an empty list).
pub async fn remove_stale_pull_secrets(
    client: &kube::Client,
    uid: &str,
    keep: &[String],
) -> Result<(), Error> {
    let all: Api<Secret> = Api::all(client.clone());
    for secret in all
        .list(&ListParams::default().labels(&format!("{PULL_SECRET_LABEL}={uid}")))
        .await?
    {
        let namespace = secret.namespace().unwrap_or_default();
        if !keep.contains(&namespace) {
            let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
            match api
                .delete(&secret.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Adds or removes the pull-Secrets finalizer so it is present exactly when needed.
pub async fn sync_finalizer(
    client: &kube::Client,
    registry: &Registry,
    namespace: &str,
    wanted: bool,
) -> Result<(), Error> {
    let present = registry
        .finalizers()
        .iter()
        .any(|f| f == PULL_SECRETS_FINALIZER);
    if present == wanted {
        return Ok(());
    }
    let mut finalizers: Vec<String> = registry
        .finalizers()
        .iter()
        .filter(|f| *f != PULL_SECRETS_FINALIZER)
        .cloned()
        .collect();
    if wanted {
        finalizers.push(PULL_SECRETS_FINALIZER.to_owned());
    }
    let api: Api<Registry> = Api::namespaced(client.clone(), namespace);
    // A merge patch with the resourceVersion fails on a concurrent change instead of losing it.
    let patch = serde_json::json!({
        "metadata": { "finalizers": finalizers, "resourceVersion": registry.resource_version() }
    });
    api.patch(
        &registry.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}
