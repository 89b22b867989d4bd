//! Secrets a Registry owns (htpasswd, pull user, CA, serving certificate), the
//! cert-manager Certificate, and the `kubernetes.io/dockerconfigjson` pull Secrets placed
//! in other namespaces (found again by the Registry's uid label, since owner references
//! cannot cross namespaces). The CA outlives its Registry unless
//! `tls.selfSigned.deleteWithRegistry` is set, like the data claim: a Registry created
//! again under the same name reuses it, so clients and nodes keep trusting it.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::{labels, owned};
use crate::operator::crd::TlsMode;
use crate::operator::registry::addresses::Addresses;
use crate::operator::registry::materials::Materials;
use crate::operator::registry::validate::{Desired, PULL_USER};

/// Label on pull Secrets: the uid of the Registry they belong to.
pub const PULL_SECRET_LABEL: &str = "dockyard.dev/registry-uid";

pub fn pull_secret_label(d: &Desired) -> (String, String) {
    (PULL_SECRET_LABEL.to_owned(), d.owner.uid.clone())
}

fn data(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, ByteString>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect(),
    )
}

fn secret(metadata: ObjectMeta, type_: &str, pairs: &[(&str, &str)]) -> Secret {
    Secret {
        metadata,
        type_: Some(type_.to_owned()),
        data: data(pairs),
        ..Secret::default()
    }
}

pub fn htpasswd(d: &Desired, m: &Materials) -> Option<Secret> {
    let text = m.htpasswd.as_deref()?;
    Some(secret(
        owned(d, super::htpasswd_name(d)),
        "Opaque",
        &[("htpasswd", text)],
    ))
}

pub fn pull_credentials(d: &Desired, m: &Materials) -> Secret {
    secret(
        owned(d, super::pull_credentials_name(d)),
        "Opaque",
        &[("username", PULL_USER), ("password", &m.pull_password)],
    )
}

pub fn ca(d: &Desired, m: &Materials) -> Option<Secret> {
    let (ca, _, _) = m.self_signed.as_ref()?;
    let mut metadata = owned(d, super::ca_name(d));
    if !matches!(&d.tls, TlsMode::SelfSigned(opts) if opts.delete_with_registry) {
        metadata.owner_references = None;
    }
    Some(secret(
        metadata,
        "Opaque",
        &[("ca.crt", &ca.cert_pem), ("ca.key", &ca.key_pem)],
    ))
}

pub fn tls(d: &Desired, m: &Materials) -> Option<Secret> {
    let (ca, serving, sans) = m.self_signed.as_ref()?;
    let mut metadata = owned(d, super::tls_name(d));
    metadata.annotations = Some(BTreeMap::from([
        ("dockyard.dev/sans".to_owned(), sans.clone()),
        (
            "dockyard.dev/not-after".to_owned(),
            serving.not_after.to_string(),
        ),
    ]));
    Some(secret(
        metadata,
        "kubernetes.io/tls",
        &[
            ("tls.crt", &serving.cert_pem),
            ("tls.key", &serving.key_pem),
            ("ca.crt", &ca.cert_pem),
        ],
    ))
}

/// The cert-manager `Certificate` for `tls.certManager`, for the same names and addresses
/// as a self-signed serving certificate.
pub fn certificate(d: &Desired, a: &Addresses) -> Option<DynamicObject> {
    let TlsMode::CertManager(issuer) = &d.tls else {
        return None;
    };
    let resource = certificate_resource();
    let mut spec = json!({
        "secretName": super::tls_name(d),
        "dnsNames": a.san_dns(),
        "issuerRef": { "name": issuer.name, "kind": issuer.kind, "group": issuer.group },
        "usages": ["server auth", "digital signature", "key encipherment"],
    });
    let ips = a.san_ips();
    if !ips.is_empty() {
        spec["ipAddresses"] = json!(ips);
    }
    let mut object = DynamicObject::new(&d.name, &resource)
        .within(&d.namespace)
        .data(json!({ "spec": spec }));
    object.metadata.labels = Some(labels(d));
    object.metadata.owner_references = Some(vec![d.owner.clone()]);
    Some(object)
}

pub fn certificate_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "cert-manager.io",
        "v1",
        "Certificate",
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
            let mut metadata = owned(d, d.pull_secret_name.clone());
            metadata.namespace = Some(ns.clone());
            // Owner references cannot point across namespaces; the uid label finds them instead.
            if ns != &d.namespace {
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
