//! Server-side apply of every built child under one field manager (returning what the API
//! server stored, so status reads the objects as applied), deletion of owned children no
//! longer wanted, and the finalizer that guards pull Secrets in other namespaces (which
//! owner references cannot reach).

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::build::{self, Children, PULL_SECRET_LABEL};
use super::validate::Desired;
use crate::operator::crd::Registry;
use crate::operator::{Error, MANAGER};

/// Finalizer present while pull Secrets exist outside the Registry's namespace.
pub const PULL_SECRETS_FINALIZER: &str = "dockyard.dev/pull-secrets";

/// Applies `object` and returns it as the API server stored it (allocated fields, status).
pub async fn apply<K>(client: &kube::Client, object: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let namespace = object.meta().namespace.clone().ok_or(Error::NoNamespace)?;
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    Ok(api
        .patch(
            &object.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(object),
        )
        .await?)
}

/// What the apply returned that status needs.
pub struct Applied {
    pub deployment: Deployment,
    pub volume: PersistentVolumeClaim,
    pub certificate: CertificateOutcome,
}

/// Outcome of applying the cert-manager Certificate.
pub enum CertificateOutcome {
    NotWanted,
    Applied,
    /// cert-manager's CRD is not installed.
    Missing,
}

/// Applies every child, then deletes the owned children `children` no longer has.
pub async fn apply_all(
    client: &kube::Client,
    d: &Desired,
    children: &Children,
) -> Result<Applied, Error> {
    let Children {
        config,
        htpasswd,
        pull_credentials,
        ca,
        tls,
        certificate,
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
    let volume = apply(client, volume).await?;
    let deployment = apply(client, deployment).await?;
    for secret in pull_secrets {
        apply(client, secret).await?;
    }
    remove_stale_pull_secrets(
        client,
        &d.owner.uid,
        &d.pull_namespaces,
        &d.pull_secret_name,
    )
    .await?;
    remove_stale_children(client, d, children).await?;
    Ok(Applied {
        deployment,
        volume,
        certificate: outcome,
    })
}

/// Deletes the Secrets and the cert-manager Certificate in the Registry's namespace that
/// carry its labels and its owner reference but are no longer built (auth switched off, TLS
/// mode changed). Children without its owner reference (the kept claim and CA) stay.
async fn remove_stale_children(
    client: &kube::Client,
    d: &Desired,
    children: &Children,
) -> Result<(), Error> {
    let selector = ListParams::default().labels(&build::children_selector(d));
    let owned_by = |meta: &kube::api::ObjectMeta| {
        meta.owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == d.owner.uid)
    };
    let wanted = build::wanted_secrets(d, children);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &d.namespace);
    for secret in secrets.list_metadata(&selector).await? {
        let name = secret.name_any();
        if owned_by(&secret.metadata) && !wanted.contains(&name) {
            tracing::info!(secret = %name, "deleting a Secret the Registry no longer needs");
            delete_if_present(&secrets, &name).await?;
        }
    }
    let resource = build::certificate_resource();
    let certificates: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &d.namespace, &resource);
    let listed = match certificates.list_metadata(&selector).await {
        Ok(list) => list.items,
        // cert-manager is not installed: there is nothing to delete.
        Err(kube::Error::Api(e)) if e.code == 404 => vec![],
        Err(e) => return Err(e.into()),
    };
    for certificate in listed {
        let name = certificate.name_any();
        if owned_by(&certificate.metadata) && children.certificate.is_none() {
            tracing::info!(certificate = %name, "deleting a Certificate the Registry no longer needs");
            delete_if_present(&certificates, &name).await?;
        }
    }
    Ok(())
}

async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
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

/// Deletes the pull Secrets of the Registry with `uid` other than `name` in the namespaces
/// `keep` (all of them for an empty list).
pub async fn remove_stale_pull_secrets(
    client: &kube::Client,
    uid: &str,
    keep: &[String],
    name: &str,
) -> Result<(), Error> {
    let all: Api<Secret> = Api::all(client.clone());
    for secret in all
        .list_metadata(&ListParams::default().labels(&format!("{PULL_SECRET_LABEL}={uid}")))
        .await?
    {
        let namespace = secret.namespace().unwrap_or_default();
        if !keep.contains(&namespace) || secret.name_any() != name {
            let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
            delete_if_present(&api, &secret.name_any()).await?;
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
