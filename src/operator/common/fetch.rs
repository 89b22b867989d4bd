//! Reads every kind's reconcile makes: the Secrets a spec names (before validation) and the
//! workload's pods (for the scheduler's verdict, after apply).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::ListParams;

use crate::operator::Error;

/// The Secrets named `names` in `namespace`, by name (missing ones are absent; validation
/// says so).
pub async fn secrets(
    client: &kube::Client,
    namespace: &str,
    names: Vec<String>,
) -> Result<BTreeMap<String, Secret>, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut secrets = BTreeMap::new();
    for name in names {
        if let Some(s) = api.get_opt(&name).await? {
            secrets.insert(name, s);
        }
    }
    Ok(secrets)
}

/// The pods selected by `selector` in `namespace`.
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
