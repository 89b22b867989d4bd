//! The registry's `config.yml` (distribution's format) in a ConfigMap. It holds no secret:
//! S3 keys and `http.secret` reach the pods as environment from Secrets (`REGISTRY_*`
//! overrides, see `build::env`).

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::operator::common::pod::{DATA_DIR, TLS_DIR, http_config};
use crate::operator::crd::{EncryptionType, GarbageCollection, TlsMode};
use crate::operator::registry::validate::{Desired, PULL_USER, S3Plan};

/// Where the htpasswd Secret is mounted in the registry pod.
pub const HTPASSWD_DIR: &str = "/etc/dockyard/auth";
const HTPASSWD_PATH: &str = "/etc/dockyard/auth/htpasswd";

/// The config file the registry pods read.
pub fn config_yaml(d: &Desired) -> String {
    let storage = match &d.s3 {
        None => json!({
            "filesystem": { "rootdirectory": DATA_DIR },
            "delete": { "enabled": d.delete_enabled },
        }),
        Some(s3) => json!({
            "s3": s3_section(s3),
            "delete": { "enabled": d.delete_enabled },
            "redirect": { "disable": !s3.spec.redirect },
            "maintenance": { "gc": gc_section(&s3.spec.gc) },
        }),
    };
    let mut config = json!({
        "version": "0.1",
        "log": { "level": "info", "formatter": "json" },
        "storage": storage,
        "http": http_config(),
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

/// registry:2's `storage.s3` keys, without credentials (they come from the environment, or
/// the default AWS chain when there are none).
fn s3_section(s3: &S3Plan) -> Value {
    let spec = &s3.spec;
    let mut section = json!({ "bucket": spec.bucket });
    let mut set = |key: &str, value: Value| {
        section[key] = value;
    };
    if let Some(region) = &spec.region {
        set("region", json!(region));
    }
    if let Some(endpoint) = &spec.endpoint {
        set("regionendpoint", json!(endpoint.trim_end_matches('/')));
    }
    if let Some(path_style) = spec.force_path_style {
        set("forcepathstyle", json!(path_style));
    }
    if let Some(root) = &spec.root_directory {
        set(
            "rootdirectory",
            json!(format!("/{}", root.trim_matches('/'))),
        );
    }
    if spec.insecure_skip_verify {
        set("skipverify", json!(true));
    }
    if let Some(bytes) = s3.chunk_size {
        set("chunksize", json!(bytes));
    }
    match spec.encryption.as_ref().map(|e| (e.type_, &e.key_id)) {
        None | Some((EncryptionType::None, _)) => {}
        Some((EncryptionType::Aes256, _)) => set("encrypt", json!(true)),
        Some((EncryptionType::Kms, key_id)) => {
            set("encrypt", json!(true));
            set("keyid", json!(key_id));
        }
    }
    if let Some(class) = &spec.storage_class {
        set("storageclass", json!(class));
    }
    section
}

/// `storage.maintenance.gc`: Dockyard's scheduled online garbage collection.
fn gc_section(gc: &GarbageCollection) -> Value {
    let mut section = json!({
        "enabled": gc.enabled,
        "deleteuntagged": gc.delete_untagged,
        "dryrun": gc.dry_run,
    });
    if let Some(interval) = &gc.interval {
        section["interval"] = json!(interval);
    }
    if let Some(grace) = &gc.grace {
        section["grace"] = json!(grace);
    }
    section
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
