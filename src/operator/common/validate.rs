//! Validation shared by every kind: what makes a spec unreconcilable ([`Invalid`], with a
//! reason and a message that says how to fix it) and reading a key of a referenced Secret.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use crate::operator::crd::SecretKeyRef;

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
