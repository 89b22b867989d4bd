//! Validation shared by every kind: what makes a spec unreconcilable ([`Invalid`], with a
//! reason and a message that says how to fix it) and reading a key of a referenced Secret.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use kube::{Resource, ResourceExt};

use super::Workload;
use crate::operator::crd::{
    FilesystemStorage, PodOptions, SecretKeyRef, ServiceSpec, TlsMode, TlsSpec,
};

/// Why a resource cannot be reconciled as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub reason: &'static str,
    pub message: String,
}

pub fn invalid(reason: &'static str, message: String) -> Invalid {
    Invalid { reason, message }
}

/// Reads `key` of the Secret `r.name` from the fetched Secrets.
pub fn secret_value(
    secrets: &BTreeMap<String, Secret>,
    r: &SecretKeyRef,
    what: &str,
) -> Result<String, Invalid> {
    let secret = secrets.get(&r.name).ok_or_else(|| {
        invalid(
            "SecretNotFound",
            format!(
                "{what}: Secret {:?} does not exist in this namespace",
                r.name
            ),
        )
    })?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(&r.key))
                .map(|s| s.clone().into_bytes())
        })
        .ok_or_else(|| {
            invalid(
                "SecretKeyNotFound",
                format!("{what}: Secret {:?} has no key {:?}", r.name, r.key),
            )
        })?;
    String::from_utf8(bytes).map_err(|_| {
        invalid(
            "SecretNotText",
            format!(
                "{what}: key {:?} of Secret {:?} is not UTF-8 text",
                r.key, r.name
            ),
        )
    })
}

/// The API server refused the Service as built from the spec (a pinned `clusterIP` outside
/// the cluster's service range, or already taken): what to fix.
pub fn service_invalid(message: &str) -> Invalid {
    invalid(
        "ServiceInvalid",
        format!(
            "the API server refused the Service built from spec.service: {message}; fix spec.service (a pinned clusterIP must be a free address in the cluster's service range)"
        ),
    )
}

/// What every kind's spec says about its workload.
pub struct WorkloadSpec<'a> {
    /// `app.kubernetes.io/name` of the children.
    pub app: &'static str,
    pub image: Option<&'a String>,
    pub replicas: i32,
    pub service: &'a ServiceSpec,
    pub tls: &'a TlsSpec,
    pub storage: Option<&'a FilesystemStorage>,
    pub pod: &'a PodOptions,
    /// Whether the pods serve the web UI.
    pub ui: bool,
}

/// The workload of `object`: its name, namespace and owner reference, the image (the
/// operator's own unless the spec names one) and the TLS mode, whose user Secret must hold
/// `tls.crt` and `tls.key`.
pub fn workload<K: Resource<DynamicType = ()>>(
    object: &K,
    spec: WorkloadSpec<'_>,
    secrets: &BTreeMap<String, Secret>,
    default_image: &str,
) -> Result<Workload, Invalid> {
    let kind = K::kind(&());
    let namespace = object
        .namespace()
        .ok_or_else(|| invalid("NoNamespace", format!("{kind} has no namespace")))?;
    let owner = object
        .controller_owner_ref(&())
        .ok_or_else(|| invalid("NoUid", format!("{kind} has no uid yet")))?;
    let tls = spec.tls.mode();
    if let TlsMode::Secret(secret) = &tls {
        for key in ["tls.crt", "tls.key"] {
            let r = SecretKeyRef {
                name: secret.clone(),
                key: key.into(),
            };
            secret_value(secrets, &r, "tls.secretRef")?;
        }
    }
    Ok(Workload {
        name: object.name_any(),
        namespace,
        owner,
        app: spec.app,
        image: spec
            .image
            .cloned()
            .unwrap_or_else(|| default_image.to_owned()),
        replicas: spec.replicas,
        service: spec.service.clone(),
        tls,
        storage: Some(spec.storage.cloned().unwrap_or_default()),
        pod: spec.pod.clone(),
        ui: spec.ui,
    })
}
