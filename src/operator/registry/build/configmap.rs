//! The registry's `config.yml` (distribution's format) in a ConfigMap.

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::operator::common::pod::{CONTAINER_PORT, DATA_DIR, TLS_DIR};
use crate::operator::crd::TlsMode;
use crate::operator::registry::validate::{Desired, PULL_USER};

/// Where the htpasswd Secret is mounted in the registry pod.
pub const HTPASSWD_DIR: &str = "/etc/dockyard/auth";
const HTPASSWD_PATH: &str = "/etc/dockyard/auth/htpasswd";

/// The config file the registry pods read.
pub fn config_yaml(d: &Desired) -> String {
    let mut config = json!({
        "version": "0.1",
        "log": { "level": "info", "formatter": "json" },
        "storage": {
            "filesystem": { "rootdirectory": DATA_DIR },
            "delete": { "enabled": d.delete_enabled },
        },
        "http": { "addr": format!(":{CONTAINER_PORT}") },
    });
    if !matches!(d.workload.tls, TlsMode::Disabled) {
        config["http"]["tls"] = json!({
            "certificate": format!("{TLS_DIR}/tls.crt"),
            "key": format!("{TLS_DIR}/tls.key"),
        });
    }
    if let Some(auth) = &d.auth {
        // The generated pull-Secret user may pull and nothing else, whatever the rules say.
        let mut section = json!({
            "htpasswd": { "realm": format!("{}/{}", d.workload.namespace, d.workload.name), "path": HTPASSWD_PATH },
            "pullonly": [PULL_USER],
        });
        if !auth.anonymous_pull.is_empty() {
            section["anonymouspull"] = json!(auth.anonymous_pull);
        }
        if !auth.access.is_empty() {
            let mut rules: Vec<Value> = auth
                .access
                .iter()
                .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
                .collect();
            rules
                .push(json!({ "users": [PULL_USER], "repositories": ["**"], "actions": ["pull"] }));
            section["access"] = Value::Array(rules);
        }
        config["auth"] = section;
    }
    serde_yaml::to_string(&config).unwrap_or_default()
}

pub fn build(d: &Desired) -> ConfigMap {
    ConfigMap {
        metadata: d.workload.owned(d.workload.config_name()),
        data: Some([("config.yml".to_owned(), config_yaml(d))].into()),
        ..ConfigMap::default()
    }
}

/// A hash of the configuration, put on the pod template so a change rolls the pods.
pub fn hash(config: &ConfigMap) -> String {
    let mut h = Sha256::new();
    for (k, v) in config.data.iter().flatten() {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}
