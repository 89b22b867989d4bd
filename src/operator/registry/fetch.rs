//! Reads the material already stored in a Registry's managed Secrets (before apply), so that
//! nothing changes when nothing needs to.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::build::HTTP_SECRET;
use super::materials::Existing;
use crate::operator::Error;
use crate::operator::common::{Workload, tls};

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
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
    let http_secret = api
        .get_opt(&workload.child(HTTP_SECRET))
        .await?
        .and_then(|s| text(&s, "secret"))
        .filter(|s| !s.is_empty());
    Ok(Existing {
        htpasswd,
        pull_password,
        http_secret,
        tls: tls::fetch(&api, workload).await?,
    })
}
