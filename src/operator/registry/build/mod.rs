//! Pure builders: the desired state and its materials become complete child objects.
//! One file per child; `apply` destructures [`Children`] without `..`, so a new child
//! does not compile until it is applied. The Service comes first and alone
//! ([`service`]): the addresses the API server allocates for it are an input of the rest.

mod configmap;
mod deployment;
mod secrets;
mod service;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::DynamicObject;

use super::addresses::Addresses;
use super::materials::Materials;
use super::validate::Desired;

pub use configmap::{CONFIG_PATH, config_yaml};
pub use deployment::HEALTH_PATH;
pub use secrets::{PULL_SECRET_LABEL, certificate_resource, pull_secret_label};
pub use service::service;

/// Port the registry container listens on.
pub const CONTAINER_PORT: i32 = 5000;

/// Every object a Registry owns, as built, apart from the Service (built first).
pub struct Children {
    pub config: ConfigMap,
    pub htpasswd: Option<Secret>,
    pub pull_credentials: Secret,
    pub ca: Option<Secret>,
    pub tls: Option<Secret>,
    pub certificate: Option<DynamicObject>,
    pub volume: PersistentVolumeClaim,
    pub deployment: Deployment,
    /// dockerconfigjson Secrets, one per listed namespace.
    pub pull_secrets: Vec<Secret>,
}

/// The children of `d`, whose Service is reachable at `a`.
pub fn build(d: &Desired, a: &Addresses, m: &Materials) -> Children {
    let config = configmap::build(d);
    let config_hash = configmap::hash(&config);
    Children {
        htpasswd: secrets::htpasswd(d, m),
        pull_credentials: secrets::pull_credentials(d, m),
        ca: secrets::ca(d, m),
        tls: secrets::tls(d, m),
        certificate: secrets::certificate(d, a),
        volume: service::volume(d),
        deployment: deployment::build(d, &config_hash),
        pull_secrets: secrets::pull_secrets(d, a, m),
        config,
    }
}

/// Names of the owned Secrets in the Registry's namespace that `children` want, including
/// the one cert-manager writes for a Certificate; any other Secret the Registry owns is stale.
pub fn wanted_secrets(d: &Desired, children: &Children) -> Vec<String> {
    let built = [
        children.htpasswd.as_ref(),
        Some(&children.pull_credentials),
        children.ca.as_ref(),
        children.tls.as_ref(),
    ];
    let own_pull = children
        .pull_secrets
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(d.namespace.as_str()));
    let mut names: Vec<String> = built
        .into_iter()
        .flatten()
        .chain(own_pull)
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    if children.certificate.is_some() {
        names.push(tls_name(d));
    }
    names
}

/// `app.kubernetes.io/instance=<name>,app.kubernetes.io/managed-by=dockyard`: every child.
pub fn children_selector(d: &Desired) -> String {
    format!(
        "app.kubernetes.io/instance={},app.kubernetes.io/managed-by=dockyard",
        d.name
    )
}

/// Labels on every child; the selector uses the first two.
pub fn labels(d: &Desired) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "dockyard-registry".to_owned(),
        ),
        ("app.kubernetes.io/instance".to_owned(), d.name.clone()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "dockyard".to_owned(),
        ),
    ])
}

pub fn selector(d: &Desired) -> BTreeMap<String, String> {
    labels(d)
        .into_iter()
        .filter(|(k, _)| k != "app.kubernetes.io/managed-by")
        .collect()
}

/// Metadata of a child in the Registry's namespace, owned by it.
fn owned(d: &Desired, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(d.namespace.clone()),
        labels: Some(labels(d)),
        owner_references: Some(vec![d.owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// Names of the children.
pub fn config_name(d: &Desired) -> String {
    format!("{}-config", d.name)
}
pub fn htpasswd_name(d: &Desired) -> String {
    format!("{}-htpasswd", d.name)
}
pub fn ca_name(d: &Desired) -> String {
    format!("{}-ca", d.name)
}
pub fn tls_name(d: &Desired) -> String {
    format!("{}-tls", d.name)
}
pub fn pull_credentials_name(d: &Desired) -> String {
    format!("{}-pull-credentials", d.name)
}
pub fn volume_name(d: &Desired) -> String {
    format!("{}-data", d.name)
}

#[cfg(test)]
mod tests;
