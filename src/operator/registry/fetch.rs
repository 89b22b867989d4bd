//! Reads what a reconcile needs from the API server: the Secrets the Registry refers to and
//! the material already stored in its managed Secrets (before apply), and the registry pods
//! the scheduler could not place (after apply).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::ListParams;

use super::materials::Existing;
use super::referenced_secrets;
use crate::operator::Error;
use crate::operator::common::{Workload, tls};
use crate::operator::crd::Registry;

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// The Secrets the Registry's spec refers to, by name (missing ones are absent; validation
/// says so).
pub async fn referenced(
    client: &kube::Client,
    registry: &Registry,
    namespace: &str,
) -> Result<BTreeMap<String, Secret>, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut secrets = BTreeMap::new();
    for name in referenced_secrets(registry) {
        if let Some(s) = api.get_opt(&name).await? {
            secrets.insert(name, s);
        }
    }
    Ok(secrets)
}

/// The material already stored in the Registry's managed Secrets.
pub async fn existing(client: &kube::Client, workload: &Workload) -> Result<Existing, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &workload.namespace);
    let htpasswd = api
        .get_opt(&workload.child("htpasswd"))
        .await?
        .and_then(|s| text(&s, "htpasswd"));
    let pull_password = api
        .get_opt(&workload.child("pull-credentials"))
        .await?
        .and_then(|s| text(&s, "password"));
    Ok(Existing {
        htpasswd,
        pull_password,
        tls: tls::fetch(&api, workload).await?,
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
