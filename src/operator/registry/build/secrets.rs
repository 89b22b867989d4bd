//! Secrets only a Registry has (htpasswd, pull user, the replicas' `http.secret`), and the
//! `kubernetes.io/dockerconfigjson` pull Secrets placed in other namespaces (found again by
//! the Registry's uid label, since owner references cannot cross namespaces). The TLS
//! Secrets are built by `common::tls`.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use serde_json::json;

use crate::operator::common::Addresses;
use crate::operator::common::tls::secret;
use crate::operator::registry::materials::Materials;
use crate::operator::registry::validate::{Desired, PULL_USER};

/// Label on pull Secrets: the uid of the Registry they belong to.
pub const PULL_SECRET_LABEL: &str = "dockyard.dev/registry-uid";

pub fn pull_secret_label(d: &Desired) -> (String, String) {
    (PULL_SECRET_LABEL.to_owned(), d.workload.owner.uid.clone())
}

pub fn htpasswd(d: &Desired, m: &Materials) -> Option<Secret> {
    let text = m.htpasswd.as_deref()?;
    Some(secret(
        d.workload.owned(super::htpasswd_name(d)),
        "Opaque",
        &[("htpasswd", text)],
    ))
}

pub fn pull_credentials(d: &Desired, m: &Materials) -> Secret {
    secret(
        d.workload.owned(super::pull_credentials_name(d)),
        "Opaque",
        &[("username", PULL_USER), ("password", &m.pull_password)],
    )
}

/// The replicas' shared `http.secret`, when they share storage.
pub fn http_secret(d: &Desired, m: &Materials) -> Option<Secret> {
    let value = m.http_secret.as_deref()?;
    Some(secret(
        d.workload.owned(d.workload.child(super::HTTP_SECRET)),
        "Opaque",
        &[("secret", value)],
    ))
}

/// One `auths` entry per address in `a` (the kubelet looks the image's host up verbatim).
pub fn pull_secrets(d: &Desired, a: &Addresses, m: &Materials) -> Vec<Secret> {
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{PULL_USER}:{}", m.pull_password));
    let auths: serde_json::Map<String, serde_json::Value> = a
        .hosts()
        .into_iter()
        .map(|host| {
            (
                host,
                json!({ "username": PULL_USER, "password": m.pull_password, "auth": auth }),
            )
        })
        .collect();
    let config = json!({ "auths": auths }).to_string();
    d.pull_namespaces
        .iter()
        .map(|ns| {
            let mut metadata = d.workload.owned(d.pull_secret_name.clone());
            metadata.namespace = Some(ns.clone());
            // Owner references cannot point across namespaces; the uid label finds them instead.
            if ns != &d.workload.namespace {
                metadata.owner_references = None;
            }
            let (key, value) = pull_secret_label(d);
            metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .insert(key, value);
            secret(
                metadata,
                "kubernetes.io/dockerconfigjson",
                &[(".dockerconfigjson", &config)],
            )
        })
        .collect()
}
