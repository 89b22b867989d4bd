//! Applies a Registry's children (`common::apply`), deletes the owned ones no longer
//! wanted, and keeps the finalizer that guards pull Secrets in other namespaces (which
//! owner references cannot reach).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::build::{self, Children, PULL_SECRET_LABEL};
use super::validate::Desired;
use crate::operator::Error;
use crate::operator::common::apply::{
    CertificateOutcome, apply, apply_certificate, delete_if_present, remove_stale_children,
};

/// Finalizer present while pull Secrets exist outside the Registry's namespace.
pub const PULL_SECRETS_FINALIZER: &str = "dockyard.dev/pull-secrets";

/// What the apply returned that status needs.
pub struct Applied {
    pub deployment: Deployment,
    pub volume: PersistentVolumeClaim,
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
    let w = &d.workload;
    let outcome = apply_certificate(client, w, certificate.as_ref()).await?;
    let volume = apply(client, volume).await?;
    let deployment = apply(client, deployment).await?;
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
