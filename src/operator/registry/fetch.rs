//! Reads what a reconcile needs from the API server: the Secrets the Registry refers to and
//! the material already stored in its managed Secrets (before apply), and the registry pods
//! the scheduler could not place (after apply).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::ListParams;

use super::materials::{Existing, ExistingServing};
use super::referenced_secrets;
use crate::operator::Error;
use crate::operator::crd::Registry;
use crate::operator::pki::{CaBundle, ServingCert};

pub struct Observed {
    /// Referenced Secrets by name (missing ones are absent; validation says so).
    pub secrets: BTreeMap<String, Secret>,
    pub existing: Existing,
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

pub async fn fetch(
    client: &kube::Client,
    registry: &Registry,
    namespace: &str,
    name: &str,
) -> Result<Observed, Error> {
    let secrets_api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut secrets = BTreeMap::new();
    for secret_name in referenced_secrets(registry) {
        if let Some(s) = secrets_api.get_opt(&secret_name).await? {
            secrets.insert(secret_name, s);
        }
    }
    let managed = |suffix: &str| format!("{name}-{suffix}");
    let htpasswd = secrets_api
        .get_opt(&managed("htpasswd"))
        .await?
        .and_then(|s| text(&s, "htpasswd"));
    let pull_password = secrets_api
        .get_opt(&managed("pull-credentials"))
        .await?
        .and_then(|s| text(&s, "password"));
    let ca_secret = secrets_api.get_opt(&managed("ca")).await?;
    let ca = ca_secret.as_ref().and_then(|s| {
        Some(CaBundle {
            cert_pem: text(s, "ca.crt")?,
            key_pem: text(s, "ca.key")?,
        })
    });
    let ca_damaged = ca_secret.is_some() && ca.is_none();
    let serving = secrets_api.get_opt(&managed("tls")).await?.and_then(|s| {
        let annotations = s.metadata.annotations.as_ref()?;
        Some(ExistingServing {
            sans: annotations.get("dockyard.dev/sans")?.clone(),
            cert: ServingCert {
                cert_pem: text(&s, "tls.crt")?,
                key_pem: text(&s, "tls.key")?,
                not_after: annotations.get("dockyard.dev/not-after")?.parse().ok()?,
            },
        })
    });
    Ok(Observed {
        secrets,
        existing: Existing {
            htpasswd,
            pull_password,
            ca,
            ca_damaged,
            serving,
        },
    })
}

/// The registry pods (selected by `selector`) in `namespace`, for the scheduler's verdict.
pub async fn pods(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
) -> Result<Vec<Pod>, Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .list(&ListParams::default().labels(selector))
        .await?
        .items)
}
