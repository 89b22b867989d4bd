//! Pure builders of a mirror's children: its `config.yml` (the registry in proxy mode, with
//! one upstream per mirrored host) in a Secret, because it holds upstream credentials; the
//! TLS Secrets, claim and Service (`common`); and the Deployment. `apply` destructures
//! [`Children`] without `..`, so a new child does not compile until it is applied.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::DynamicObject;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::validate::Desired;
use crate::operator::common::pod::{self, CONFIG_DIR, DATA_DIR, TLS_DIR};
use crate::operator::common::tls::{self, SelfSigned, secret};
use crate::operator::common::{Addresses, service};
use crate::operator::crd::TlsMode;

/// Every object a mirror owns, as built, apart from the Service (built first).
pub struct Children {
    pub config: Secret,
    pub ca: Option<Secret>,
    pub tls: Option<Secret>,
    pub certificate: Option<DynamicObject>,
    /// The cache's claim (always made for a mirror).
    pub volume: Option<PersistentVolumeClaim>,
    pub deployment: Deployment,
}

/// The name of the upstream CA file of upstream `i` in the config Secret.
fn ca_file(i: usize) -> String {
    format!("upstream-{i}-ca.crt")
}

/// The mirror's `config.yml`: registry:2's keys plus Dockyard's `proxy.upstreams`.
pub fn config_yaml(d: &Desired) -> String {
    let upstreams: Vec<Value> = d
        .upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let mut entry = json!({
                "host": u.host,
                "urls": [u.url],
                // docker's registry-mirrors names no upstream: Docker Hub is the default.
                "default": u.host == "docker.io",
            });
            if let Some((user, password)) = &u.credentials {
                entry["username"] = json!(user);
                entry["password"] = json!(password);
            }
            if u.ca_pem.is_some() {
                entry["ca"] = json!(format!("{CONFIG_DIR}/{}", ca_file(i)));
            }
            if u.insecure {
                entry["insecure"] = json!(true);
            }
            entry
        })
        .collect();
    let mut proxy = json!({ "upstreams": upstreams });
    for (key, value) in [
        ("ttl", &d.cache.ttl),
        ("maxsize", &d.cache.max_size),
        ("freshness", &d.cache.freshness),
    ] {
        if let Some(v) = value {
            proxy[key] = json!(v);
        }
    }
    let mut config = json!({
        "version": "0.1",
        "log": { "level": "info", "formatter": "json" },
        "storage": { "filesystem": { "rootdirectory": DATA_DIR } },
        "http": pod::http_config(),
        "proxy": proxy,
    });
    if !d.workload.ui {
        config["ui"] = json!({ "enabled": false });
    }
    if !matches!(d.workload.tls, TlsMode::Disabled) {
        config["http"]["tls"] = json!({
            "certificate": format!("{TLS_DIR}/tls.crt"),
            "key": format!("{TLS_DIR}/tls.key"),
        });
    }
    serde_yaml::to_string(&config).unwrap_or_default()
}

/// The config Secret: `config.yml` and the upstream CAs it names.
pub fn config(d: &Desired) -> Secret {
    let yaml = config_yaml(d);
    let cas: Vec<(String, &str)> = d
        .upstreams
        .iter()
        .enumerate()
        .filter_map(|(i, u)| Some((ca_file(i), u.ca_pem.as_deref()?)))
        .collect();
    let mut pairs: Vec<(&str, &str)> = vec![("config.yml", &yaml)];
    pairs.extend(cas.iter().map(|(k, v)| (k.as_str(), *v)));
    secret(d.workload.owned(d.workload.config_name()), "Opaque", &pairs)
}

/// A hash of the configuration, put on the pod template so a change rolls the pods.
fn hash(config: &Secret) -> String {
    let mut h = Sha256::new();
    for (k, v) in config.data.iter().flatten() {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(&v.0);
    }
    hex::encode(&h.finalize()[..8])
}

/// The children of `d`, reachable at `a`, with its self-signed material if any.
pub fn build(d: &Desired, a: &Addresses, self_signed: Option<&SelfSigned>) -> Children {
    let w = &d.workload;
    let config = config(d);
    let extra = pod::Extra {
        config_in_secret: true,
        ..pod::Extra::default()
    };
    Children {
        ca: tls::ca_secret(w, self_signed),
        tls: tls::tls_secret(w, self_signed),
        certificate: tls::certificate(w, a),
        volume: service::volume(w),
        deployment: pod::deployment(w, &hash(&config), &extra),
        config,
    }
}

/// Names of the owned Secrets `children` want (including the one cert-manager writes).
pub fn wanted_secrets(d: &Desired, children: &Children) -> Vec<String> {
    let mut names: Vec<String> = [
        Some(&children.config),
        children.ca.as_ref(),
        children.tls.as_ref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|s| s.metadata.name.clone())
    .collect();
    if children.certificate.is_some() {
        names.push(d.workload.tls_name());
    }
    names
}
