//! Pure validation: a RegistryMirror and the Secrets it refers to become a typed
//! [`Desired`] state, or an [`Invalid`] that says how to fix it. CEL rejects at admission
//! what the spec alone shows; this catches what needs the Secrets.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;

use crate::operator::common::Workload;
use crate::operator::common::validate::{Invalid, WorkloadSpec, invalid, secret_value, workload};
use crate::operator::crd::{CacheSpec, MirrorNodes, RegistryMirror, SecretKeyRef};

/// The `app.kubernetes.io/name` of a mirror's children.
pub const APP: &str = "dockyard-mirror";

#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub workload: Workload,
    pub upstreams: Vec<ResolvedUpstream>,
    pub cache: CacheSpec,
    pub nodes: MirrorNodes,
}

/// An upstream with its credentials and CA read from their Secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUpstream {
    pub host: String,
    /// The base URL (`https://registry-1.docker.io` for docker.io by default).
    pub url: String,
    pub credentials: Option<(String, String)>,
    pub ca_pem: Option<String>,
    pub insecure: bool,
}

/// Docker Hub's API endpoint; image names call it `docker.io`.
pub const DOCKER_HUB_URL: &str = "https://registry-1.docker.io";

/// The upstream URL of `host` when the spec names none.
pub fn default_url(host: &str) -> String {
    if host == "docker.io" {
        DOCKER_HUB_URL.to_owned()
    } else {
        format!("https://{host}")
    }
}

/// The keys a docker config may file `host` under.
fn auth_keys(host: &str) -> Vec<String> {
    let mut keys = vec![
        host.to_owned(),
        format!("https://{host}"),
        format!("http://{host}"),
    ];
    if host == "docker.io" {
        keys.extend(
            [
                "https://index.docker.io/v1/",
                "index.docker.io",
                "registry-1.docker.io",
            ]
            .map(String::from),
        );
    }
    keys
}

/// Username and password for `host` from a credentials Secret: a dockerconfigjson entry,
/// or `username` and `password` keys.
fn credentials(secret: &Secret, host: &str, name: &str) -> Result<(String, String), Invalid> {
    let data = secret.data.clone().unwrap_or_default();
    let text = |key: &str| {
        data.get(key)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    if let Some(config) = text(".dockerconfigjson") {
        let parsed: serde_json::Value = serde_json::from_str(&config).map_err(|e| {
            invalid(
                "CredentialsInvalid",
                format!("Secret {name:?}: .dockerconfigjson is not JSON: {e}"),
            )
        })?;
        let entry = auth_keys(host)
            .iter()
            .find_map(|k| parsed["auths"].get(k).cloned())
            .ok_or_else(|| {
                invalid(
                    "CredentialsInvalid",
                    format!(
                        "Secret {name:?} has no auths entry for {host:?}; add one keyed by the host"
                    ),
                )
            })?;
        let field = |k: &str| entry.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        if let (Some(u), Some(p)) = (field("username"), field("password")) {
            return Ok((u, p));
        }
        let decoded = field("auth")
            .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
            .and_then(|b| String::from_utf8(b).ok());
        return decoded
            .and_then(|d| d.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
            .ok_or_else(|| {
                invalid(
                    "CredentialsInvalid",
                    format!("Secret {name:?}: the auths entry for {host:?} has neither username and password nor a base64 user:password auth"),
                )
            });
    }
    match (text("username"), text("password")) {
        (Some(u), Some(p)) if !u.is_empty() => Ok((u, p)),
        _ => Err(invalid(
            "CredentialsInvalid",
            format!(
                "Secret {name:?} must be a kubernetes.io/dockerconfigjson Secret or hold username and password keys"
            ),
        )),
    }
}

/// Checks the mirror against the Secrets it refers to (`secrets`, by name).
pub fn validate(
    mirror: &RegistryMirror,
    secrets: &BTreeMap<String, Secret>,
    default_image: &str,
) -> Result<Desired, Invalid> {
    let spec = &mirror.spec;
    let parts = WorkloadSpec {
        app: APP,
        image: spec.image.as_ref(),
        replicas: spec.replicas,
        service: &spec.service,
        tls: &spec.tls,
        storage: spec.cache.storage.as_ref(),
        pod: &spec.pod,
        ui: spec.ui.enabled,
    };
    let workload = workload(mirror, parts, secrets, default_image)?;
    let mut upstreams = Vec::new();
    for u in &spec.upstreams {
        crate::oci::validate_host(&u.host).map_err(|e| {
            invalid(
                "UpstreamInvalid",
                format!("upstreams[].host {:?}: {e}", u.host),
            )
        })?;
        let credentials = match &u.credentials_secret_ref {
            None => None,
            Some(r) => {
                let secret = secrets.get(&r.name).ok_or_else(|| {
                    invalid(
                        "SecretNotFound",
                        format!(
                            "upstreams[{}].credentialsSecretRef: Secret {:?} does not exist in this namespace",
                            u.host, r.name
                        ),
                    )
                })?;
                Some(credentials(secret, &u.host, &r.name)?)
            }
        };
        let ca_pem = match &u.ca_secret_ref {
            None => None,
            Some(r) => {
                let pem = secret_value(
                    secrets,
                    &SecretKeyRef {
                        name: r.name.clone(),
                        key: r.key.clone(),
                    },
                    &format!("upstreams[{}].caSecretRef", u.host),
                )?;
                if !pem.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(invalid(
                        "CaInvalid",
                        format!(
                            "upstreams[{}].caSecretRef: key {:?} of Secret {:?} holds no PEM certificate",
                            u.host, r.key, r.name
                        ),
                    ));
                }
                Some(pem)
            }
        };
        upstreams.push(ResolvedUpstream {
            url: u
                .url
                .clone()
                .map(|url| url.trim_end_matches('/').to_owned())
                .unwrap_or_else(|| default_url(&u.host)),
            host: u.host.clone(),
            credentials,
            ca_pem,
            insecure: u.insecure,
        });
    }
    Ok(Desired {
        workload,
        upstreams,
        cache: spec.cache.clone(),
        nodes: spec.nodes.clone(),
    })
}

/// Names of the Secrets the mirror's spec refers to; a change to any of them must
/// reconcile it again.
pub fn referenced_secrets(mirror: &RegistryMirror) -> Vec<String> {
    let mut names: Vec<String> = mirror
        .spec
        .upstreams
        .iter()
        .flat_map(|u| {
            u.credentials_secret_ref
                .iter()
                .map(|r| r.name.clone())
                .chain(u.ca_secret_ref.iter().map(|r| r.name.clone()))
        })
        .chain(mirror.spec.tls.secret_ref.iter().map(|r| r.name.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}
