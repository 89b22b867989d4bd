//! What a Registry's pods read from their environment: registry:2's `REGISTRY_*` overrides
//! taken from Secrets (S3 keys, the replicas' shared `http.secret`), so no secret is ever
//! written into the ConfigMap, and the trust store that adds the S3 endpoint's CA.

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};

use super::HTTP_SECRET;
use crate::operator::common::pod::SecretMount;
use crate::operator::registry::materials::Materials;
use crate::operator::registry::validate::Desired;

/// Where the S3 endpoint's CA is mounted.
pub const S3_CA_DIR: &str = "/etc/dockyard/s3-ca";

/// The system's CA directory in Dockyard's image (distroless: `ca-certificates.crt`).
const SYSTEM_CA_DIR: &str = "/etc/ssl/certs";

fn from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        value: None,
    }
}

/// The registry container's environment.
pub fn env(d: &Desired, m: &Materials) -> Vec<EnvVar> {
    let mut env = Vec::new();
    if m.http_secret.is_some() {
        let secret = d.workload.child(HTTP_SECRET);
        env.push(from_secret("REGISTRY_HTTP_SECRET", &secret, "secret"));
    }
    let Some(s3) = &d.s3 else {
        return env;
    };
    if let Some(c) = &s3.credentials {
        env.push(from_secret(
            "REGISTRY_STORAGE_S3_ACCESSKEY",
            &c.secret,
            &c.access_key,
        ));
        env.push(from_secret(
            "REGISTRY_STORAGE_S3_SECRETKEY",
            &c.secret,
            &c.secret_key,
        ));
    }
    if s3.spec.ca_secret_ref.is_some() {
        // rustls reads the trust store from these directories instead of the system's
        // default locations: the system's CAs, and the endpoint's.
        env.push(EnvVar {
            name: "SSL_CERT_DIR".to_owned(),
            value: Some(format!("{SYSTEM_CA_DIR}:{S3_CA_DIR}")),
            value_from: None,
        });
    }
    env
}

/// The S3 endpoint's CA, when the spec names one: only its key, as `ca.crt`.
pub fn s3_ca_mount(d: &Desired) -> Option<SecretMount> {
    let r = d.s3.as_ref()?.spec.ca_secret_ref.as_ref()?;
    Some(SecretMount {
        volume: "s3-ca".to_owned(),
        secret: r.name.clone(),
        dir: S3_CA_DIR.to_owned(),
        only: Some((r.key.clone(), "ca.crt".to_owned())),
    })
}
