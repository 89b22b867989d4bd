//! TLS material of a workload, derived from the desired state and what already exists so
//! that nothing changes when nothing needs to: the CA is created once and never replaced
//! (clients and nodes trust it), and the serving certificate is renewed only when its names
//! change or a third of its lifetime remains. Also the Secrets that hold them, the
//! cert-manager `Certificate` for `tls.certManager`, and reading the existing material back.
//! The CA outlives its resource unless `tls.selfSigned.deleteWithRegistry` is set, like the
//! data claim: a resource created again under the same name reuses it.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use super::{Addresses, Workload};
use crate::operator::Error;
use crate::operator::crd::TlsMode;
use crate::operator::pki::{self, CaBundle, PkiError, ServingCert};

/// TLS material already stored in the managed Secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExistingTls {
    pub ca: Option<CaBundle>,
    /// The CA Secret exists but does not hold a usable CA.
    pub ca_damaged: bool,
    pub serving: Option<ExistingServing>,
}

/// A serving certificate and the facts recorded next to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingServing {
    pub cert: ServingCert,
    /// The SANs it was issued for, as recorded in the Secret's annotation.
    pub sans: String,
}

/// For `selfSigned`: the CA, the serving certificate and the SANs it was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfSigned {
    pub ca: CaBundle,
    pub serving: ServingCert,
    pub sans: String,
}

pub fn ca_common_name(w: &Workload) -> String {
    format!("Dockyard CA {}/{}", w.namespace, w.name)
}

/// The self-signed material for `w` reachable at `addresses`, reusing what `existing` holds;
/// `None` unless the TLS mode is `selfSigned`.
pub fn prepare(
    w: &Workload,
    addresses: &Addresses,
    existing: &ExistingTls,
    now: i64,
) -> Result<Option<SelfSigned>, PkiError> {
    let TlsMode::SelfSigned(opts) = &w.tls else {
        return Ok(None);
    };
    let ca_name = ca_common_name(w);
    // A CA is created once; a damaged one is reported, never silently replaced, because
    // clients and nodes trust it.
    let ca = match (&existing.ca, existing.ca_damaged) {
        (Some(ca), _) => ca.clone(),
        (None, true) => return Err(PkiError::DamagedCa),
        (None, false) => pki::new_ca(&ca_name, now)?,
    };
    let sans = addresses.sans_record();
    let fresh = existing.serving.as_ref().filter(|s| {
        s.sans == sans
            && existing.ca.is_some()
            && !pki::needs_renewal(s.cert.not_after, opts.validity_days, now)
    });
    let serving = match fresh {
        Some(s) => s.cert.clone(),
        None => pki::issue_serving(
            &ca,
            &ca_name,
            &addresses.san_dns(),
            &addresses.san_ips(),
            opts.validity_days,
            now,
        )?,
    };
    Ok(Some(SelfSigned { ca, serving, sans }))
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// Reads the CA and serving certificate stored for `w` (before apply).
pub async fn fetch(secrets: &Api<Secret>, w: &Workload) -> Result<ExistingTls, Error> {
    let ca_secret = secrets.get_opt(&w.ca_name()).await?;
    let ca = ca_secret.as_ref().and_then(|s| {
        Some(CaBundle {
            cert_pem: text(s, "ca.crt")?,
            key_pem: text(s, "ca.key")?,
        })
    });
    let ca_damaged = ca_secret.is_some() && ca.is_none();
    let serving = secrets.get_opt(&w.tls_name()).await?.and_then(|s| {
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
    Ok(ExistingTls {
        ca,
        ca_damaged,
        serving,
    })
}

/// A Secret of `type_` holding `pairs`.
pub fn secret(metadata: ObjectMeta, type_: &str, pairs: &[(&str, &str)]) -> Secret {
    let data: BTreeMap<String, ByteString> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect();
    Secret {
        metadata,
        type_: Some(type_.to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The CA Secret (`<name>-ca`), kept when its resource goes unless asked otherwise.
pub fn ca_secret(w: &Workload, m: Option<&SelfSigned>) -> Option<Secret> {
    let m = m?;
    let mut metadata = w.owned(w.ca_name());
    if !matches!(&w.tls, TlsMode::SelfSigned(opts) if opts.delete_with_registry) {
        metadata.owner_references = None;
    }
    Some(secret(
        metadata,
        "Opaque",
        &[("ca.crt", &m.ca.cert_pem), ("ca.key", &m.ca.key_pem)],
    ))
}

/// The serving certificate's Secret (`<name>-tls`), with the SANs and expiry recorded.
pub fn tls_secret(w: &Workload, m: Option<&SelfSigned>) -> Option<Secret> {
    let m = m?;
    let mut metadata = w.owned(w.tls_name());
    metadata.annotations = Some(BTreeMap::from([
        ("dockyard.dev/sans".to_owned(), m.sans.clone()),
        (
            "dockyard.dev/not-after".to_owned(),
            m.serving.not_after.to_string(),
        ),
    ]));
    Some(secret(
        metadata,
        "kubernetes.io/tls",
        &[
            ("tls.crt", &m.serving.cert_pem),
            ("tls.key", &m.serving.key_pem),
            ("ca.crt", &m.ca.cert_pem),
        ],
    ))
}

/// The cert-manager `Certificate` for `tls.certManager`, for the same names and addresses
/// as a self-signed serving certificate.
pub fn certificate(w: &Workload, a: &Addresses) -> Option<DynamicObject> {
    let TlsMode::CertManager(issuer) = &w.tls else {
        return None;
    };
    let resource = certificate_resource();
    let mut spec = json!({
        "secretName": w.tls_name(),
        "dnsNames": a.san_dns(),
        "issuerRef": { "name": issuer.name, "kind": issuer.kind, "group": issuer.group },
        "usages": ["server auth", "digital signature", "key encipherment"],
    });
    let ips = a.san_ips();
    if !ips.is_empty() {
        spec["ipAddresses"] = json!(ips);
    }
    let mut object = DynamicObject::new(&w.name, &resource)
        .within(&w.namespace)
        .data(json!({ "spec": spec }));
    object.metadata.labels = Some(w.labels());
    object.metadata.owner_references = Some(vec![w.owner.clone()]);
    Some(object)
}

pub fn certificate_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "cert-manager.io",
        "v1",
        "Certificate",
    ))
}

/// The CA (PEM) nodes must trust for `w`, when it is not self-signed: `ca.crt` of the
/// user's Secret, or of the Secret cert-manager writes (absent for a publicly trusted
/// issuer, or until the certificate is issued).
pub async fn fetch_ca(secrets: &Api<Secret>, w: &Workload) -> Result<Option<String>, Error> {
    let name = match &w.tls {
        TlsMode::Secret(name) => name.clone(),
        TlsMode::CertManager(_) => w.tls_name(),
        TlsMode::SelfSigned(_) | TlsMode::Disabled => return Ok(None),
    };
    Ok(secrets
        .get_opt(&name)
        .await?
        .and_then(|s| text(&s, "ca.crt"))
        .filter(|pem| pem.contains("-----BEGIN CERTIFICATE-----")))
}
