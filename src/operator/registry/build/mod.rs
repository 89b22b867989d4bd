//! Pure builders: the desired state and its materials become complete child objects.
//! One file per child; `apply` destructures [`Children`] without `..`, so a new child
//! does not compile until it is applied. The Service comes first and alone
//! ([`service`]): the addresses the API server allocates for it are an input of the rest.

mod configmap;
mod env;
mod secrets;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::DynamicObject;

use super::materials::Materials;
use super::validate::Desired;
use crate::operator::common::pod::SecretMount;
use crate::operator::common::{Addresses, budget, pod, service as svc, tls};

pub use configmap::{HTPASSWD_DIR, config_yaml};
pub use env::S3_CA_DIR;
pub use secrets::{PULL_SECRET_LABEL, pull_secret_label};

/// The suffix of the Secret holding the replicas' shared `http.secret` (key `secret`).
pub const HTTP_SECRET: &str = "http-secret";

/// The Service of `d`, built first and alone.
pub fn service(d: &Desired) -> k8s_openapi::api::core::v1::Service {
    svc::service(&d.workload)
}

/// Every object a Registry owns, as built, apart from the Service (built first).
pub struct Children {
    pub config: ConfigMap,
    pub htpasswd: Option<Secret>,
    pub pull_credentials: Secret,
    /// `http.secret`, shared by replicas that share storage.
    pub http_secret: Option<Secret>,
    pub ca: Option<Secret>,
    pub tls: Option<Secret>,
    pub certificate: Option<DynamicObject>,
    /// The data claim; none when the images live in S3.
    pub volume: Option<PersistentVolumeClaim>,
    pub deployment: Deployment,
    /// With more than one replica.
    pub budget: Option<PodDisruptionBudget>,
    /// dockerconfigjson Secrets, one per listed namespace.
    pub pull_secrets: Vec<Secret>,
}

/// The children of `d`, whose Service is reachable at `a`.
pub fn build(d: &Desired, a: &Addresses, m: &Materials) -> Children {
    let w = &d.workload;
    let config = configmap::build(d);
    // Rotated S3 keys or CA roll the pods too: they are read once, at start.
    let config_hash = match &d.s3 {
        Some(s3) => format!("{}-{}", configmap::hash(&config), s3.fingerprint),
        None => configmap::hash(&config),
    };
    let mut extra = pod::Extra {
        env: env::env(d, m),
        ..pod::Extra::default()
    };
    if d.auth.is_some() {
        extra.secrets.push(SecretMount {
            volume: "htpasswd".into(),
            secret: htpasswd_name(d),
            dir: HTPASSWD_DIR.into(),
            only: None,
        });
    }
    extra.secrets.extend(env::s3_ca_mount(d));
    Children {
        htpasswd: secrets::htpasswd(d, m),
        pull_credentials: secrets::pull_credentials(d, m),
        http_secret: secrets::http_secret(d, m),
        ca: tls::ca_secret(w, m.self_signed.as_ref()),
        tls: tls::tls_secret(w, m.self_signed.as_ref()),
        certificate: tls::certificate(w, a),
        volume: svc::volume(w),
        deployment: pod::deployment(w, &config_hash, &extra),
        budget: budget::disruption_budget(w),
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
        children.http_secret.as_ref(),
        children.ca.as_ref(),
        children.tls.as_ref(),
    ];
    let own_pull = children
        .pull_secrets
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(d.workload.namespace.as_str()));
    let mut names: Vec<String> = built
        .into_iter()
        .flatten()
        .chain(own_pull)
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    if children.certificate.is_some() {
        names.push(d.workload.tls_name());
    }
    names
}

/// Names of the Registry's own children.
pub fn htpasswd_name(d: &Desired) -> String {
    d.workload.child("htpasswd")
}
pub fn pull_credentials_name(d: &Desired) -> String {
    d.workload.child("pull-credentials")
}

#[cfg(test)]
mod s3_tests;
#[cfg(test)]
mod tests;
