//! Server-side apply under one field manager (returning what the API server stored, so
//! status reads the objects as applied), the cert-manager Certificate (whose CRD may be
//! missing), and deletion of owned children no longer wanted.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Workload;
use super::tls::certificate_resource;
use crate::operator::{Error, MANAGER};

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

/// Outcome of applying the cert-manager Certificate.
pub enum CertificateOutcome {
    NotWanted,
    Applied,
    /// cert-manager's CRD is not installed.
    Missing,
}

impl CertificateOutcome {
    /// The Degraded warning this outcome deserves.
    pub fn warning(&self) -> Option<(&'static str, String)> {
        match self {
            CertificateOutcome::Missing => Some((
                "CertManagerNotInstalled",
                "tls.certManager needs cert-manager, but its Certificate resource (cert-manager.io/v1) is not installed in this cluster".to_owned(),
            )),
            _ => None,
        }
    }
}

/// Applies the Certificate of `w`, if it wants one.
pub async fn apply_certificate(
    client: &kube::Client,
    w: &Workload,
    cert: Option<&DynamicObject>,
) -> Result<CertificateOutcome, Error> {
    let Some(cert) = cert else {
        return Ok(CertificateOutcome::NotWanted);
    };
    let resource = certificate_resource();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &w.namespace, &resource);
    match api
        .patch(
            &w.name,
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

/// Deletes the Secrets and the cert-manager Certificate in the workload's namespace that
/// carry its labels and its owner reference but are not in `wanted_secrets` (or, for the
/// Certificate, when `certificate_wanted` is false): auth switched off, TLS mode changed.
/// Children without its owner reference (the kept claim and CA) stay.
pub async fn remove_stale_children(
    client: &kube::Client,
    w: &Workload,
    wanted_secrets: &[String],
    certificate_wanted: bool,
) -> Result<(), Error> {
    let selector = ListParams::default().labels(&w.children_selector());
    let owned_by = |meta: &kube::api::ObjectMeta| {
        meta.owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == w.owner.uid)
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &w.namespace);
    for secret in secrets.list_metadata(&selector).await? {
        let name = secret.name_any();
        if owned_by(&secret.metadata) && !wanted_secrets.contains(&name) {
            tracing::info!(secret = %name, "deleting a Secret no longer needed");
            delete_if_present(&secrets, &name).await?;
        }
    }
    if certificate_wanted {
        return Ok(());
    }
    let resource = certificate_resource();
    let certificates: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &w.namespace, &resource);
    let listed = match certificates.list_metadata(&selector).await {
        Ok(list) => list.items,
        // cert-manager is not installed: there is nothing to delete.
        Err(kube::Error::Api(e)) if e.code == 404 => vec![],
        Err(e) => return Err(e.into()),
    };
    for certificate in listed {
        let name = certificate.name_any();
        if owned_by(&certificate.metadata) {
            tracing::info!(certificate = %name, "deleting a Certificate no longer needed");
            delete_if_present(&certificates, &name).await?;
        }
    }
    Ok(())
}

/// Deletes the object `name` in the workload's namespace if the workload owns it: a child
/// no longer wanted, like the disruption budget once one replica is left. One already gone,
/// or someone else's of the same name, stays as it is.
pub async fn delete_owned<K>(client: &kube::Client, w: &Workload, name: &str) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &w.namespace);
    let Some(found) = api.get_metadata_opt(name).await? else {
        return Ok(());
    };
    let owned = found
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == w.owner.uid);
    if owned {
        tracing::info!(kind = K::kind(&()).as_ref(), %name, "deleting a child no longer needed");
        delete_if_present(&api, name).await?;
    }
    Ok(())
}

/// Deletes `name`; one already gone is fine.
pub async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Adds or removes each of `finalizers` on `object` so each is present exactly when wanted,
/// in one patch; returns the patched object, if a patch was needed.
pub async fn sync_finalizers<K>(
    client: &kube::Client,
    object: &K,
    finalizers: &[(&str, bool)],
) -> Result<Option<K>, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let current = object.finalizers();
    let mut next: Vec<String> = current
        .iter()
        .filter(|f| !finalizers.iter().any(|(name, wanted)| f == name && !wanted))
        .cloned()
        .collect();
    for (name, wanted) in finalizers {
        if *wanted && !next.iter().any(|f| f == name) {
            next.push((*name).to_owned());
        }
    }
    if next == current {
        return Ok(None);
    }
    let namespace = object.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    // A merge patch with the resourceVersion fails on a concurrent change instead of losing it.
    let patch = serde_json::json!({
        "metadata": { "finalizers": next, "resourceVersion": object.resource_version() }
    });
    let patched = api
        .patch(
            &object.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(Some(patched))
}

/// Whether the children `w` would take belong to a resource of another kind with the same
/// name (a Registry and a RegistryMirror share child names): its Service, or the data claim
/// and CA it kept when it was deleted. Taking them would mix a private registry's images
/// into a cache that evicts them, or fail on the Service; the resource is reported instead.
pub async fn name_conflict(
    client: &kube::Client,
    w: &Workload,
) -> Result<Option<super::validate::Invalid>, Error> {
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
    let other_kind = |labels: Option<&std::collections::BTreeMap<String, String>>| {
        labels
            .and_then(|l| l.get(super::NAME_LABEL))
            .filter(|app| app.as_str() != w.app && app.starts_with("dockyard-"))
            .cloned()
    };
    let services: Api<Service> = Api::namespaced(client.clone(), &w.namespace);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &w.namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &w.namespace);
    let mut taken = Vec::new();
    if let Some(s) = services.get_opt(&w.name).await?
        && let Some(app) = other_kind(s.metadata.labels.as_ref())
    {
        taken.push((format!("Service {}", w.name), app));
    }
    if let Some(c) = claims.get_opt(&w.volume_name()).await?
        && let Some(app) = other_kind(c.metadata.labels.as_ref())
    {
        taken.push((format!("PersistentVolumeClaim {}", w.volume_name()), app));
    }
    if let Some(c) = secrets.get_opt(&w.ca_name()).await?
        && let Some(app) = other_kind(c.metadata.labels.as_ref())
    {
        taken.push((format!("Secret {}", w.ca_name()), app));
    }
    let Some((first, app)) = taken.first() else {
        return Ok(None);
    };
    let what: Vec<&str> = taken.iter().map(|(t, _)| t.as_str()).collect();
    Ok(Some(super::validate::invalid(
        "NameInUse",
        format!(
            "{first} belongs to a {app} of the same name ({}): a Registry and a RegistryMirror in one namespace need different names; rename this one (or delete what the other left, if it is no longer wanted)",
            what.join(", ")
        ),
    )))
}
