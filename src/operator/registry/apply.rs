//! Applies a Registry's children (`common::apply`), deletes the owned ones no longer
//! wanted (Secrets, the Certificate, the disruption budget of a single replica), and keeps
//! the finalizer that guards pull Secrets in other namespaces (which owner references
//! cannot reach).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::build::{self, Children, PULL_SECRET_LABEL};
use super::validate::Desired;
use crate::operator::Error;
use crate::operator::common::apply::{
    CertificateOutcome, apply, apply_certificate, delete_if_present, delete_owned,
    remove_stale_children,
};

/// Finalizer present while pull Secrets exist outside the Registry's namespace.
pub const PULL_SECRETS_FINALIZER: &str = "dockyard.dev/pull-secrets";

/// What the apply returned that status needs.
pub struct Applied {
    pub deployment: Deployment,
    /// The data claim; none when the images live in S3.
    pub volume: Option<PersistentVolumeClaim>,
    pub certificate: CertificateOutcome,
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
        http_secret,
        ca,
        tls,
        certificate,
        volume,
        deployment,
        budget,
        pull_secrets,
    } = children;
    apply(client, config).await?;
    apply(client, pull_credentials).await?;
    for secret in [htpasswd, http_secret, ca, tls].into_iter().flatten() {
        apply(client, secret).await?;
    }
    let w = &d.workload;
    let outcome = apply_certificate(client, w, certificate.as_ref()).await?;
    let volume = match volume {
        Some(claim) => Some(apply(client, claim).await?),
        None => None,
    };
    let deployment = apply(client, deployment).await?;
    match budget {
        Some(budget) => drop(apply(client, budget).await?),
        None => delete_owned::<PodDisruptionBudget>(client, w, &w.name).await?,
    }
    for secret in pull_secrets {
        apply(client, secret).await?;
    }
    remove_stale_pull_secrets(
        client,
        &w.owner.uid,
        &d.pull_namespaces,
        &d.pull_secret_name,
    )
    .await?;
    let wanted = build::wanted_secrets(d, children);
    remove_stale_children(client, w, &wanted, children.certificate.is_some()).await?;
    Ok(Applied {
        deployment,
        volume,
        certificate: outcome,
    })
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
