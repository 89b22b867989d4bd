//! Builder tests: the objects a user would find in the cluster.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::operator::common::Addresses;
use crate::operator::common::tls::{ExistingServing, ExistingTls, SelfSigned};
use crate::operator::registry::materials::{Existing, prepare};
use crate::operator::registry::validate::tests::{registry, secret};
use crate::operator::registry::validate::{Desired, validate};

const NOW: i64 = 1_790_000_000;

pub(super) fn desired(spec: serde_json::Value, secrets: &[(&str, &[(&str, &str)])]) -> Desired {
    let secrets: BTreeMap<_, _> = secrets.iter().map(|(n, p)| secret(n, p)).collect();
    validate(&registry(spec), &secrets, "example.test/dockyard:1").unwrap()
}

/// The addresses of `d`'s Service once the API server allocated `cluster_ip`.
fn at(d: &Desired, cluster_ip: &str) -> Addresses {
    let mut applied = service(d);
    applied.spec.as_mut().unwrap().cluster_ip = Some(cluster_ip.to_owned());
    Addresses::of(&d.workload, &applied)
}

/// Children of `d` at 10.96.0.5 with fresh materials.
pub(super) fn children(d: &Desired) -> (Children, Materials) {
    let a = at(d, "10.96.0.5");
    let m = prepare(d, &a, &Existing::default(), NOW, &Default::default()).unwrap();
    (build(d, &a, &m), m)
}

#[test]
fn service_is_complete() {
    let d = desired(
        json!({"service": {"type": "NodePort", "port": 443, "clusterIP": "10.96.0.50"}}),
        &[],
    );
    let svc = serde_json::to_value(service(&d)).unwrap();
    assert_eq!(
        svc,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": "reg", "namespace": "team",
                "labels": {"app.kubernetes.io/instance": "reg", "app.kubernetes.io/managed-by": "dockyard", "app.kubernetes.io/name": "dockyard-registry"},
                "ownerReferences": [{"apiVersion": "dockyard.dev/v1alpha1", "kind": "Registry", "name": "reg", "uid": "uid-1", "controller": true}]
            },
            "spec": {
                "type": "NodePort", "clusterIP": "10.96.0.50",
                "selector": {"app.kubernetes.io/instance": "reg", "app.kubernetes.io/name": "dockyard-registry"},
                "ports": [{"name": "registry", "port": 443, "targetPort": "registry", "protocol": "TCP"}]
            }
        })
    );
}

#[test]
fn the_config_is_one_the_registry_accepts() {
    let d = desired(
        json!({"storage": {"deleteEnabled": true}, "auth": {"users": [{"username": "alice", "passwordSecretRef": {"name": "pw", "key": "p"}}],
               "anonymousPull": ["public/**"], "access": [{"users": ["alice"], "repositories": ["**"], "actions": ["pull", "push"]}]}}),
        &[("pw", &[("p", "secret")])],
    );
    let loaded = crate::config::Config::parse(&config_yaml(&d), vec![]).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert!(c.storage.delete.enabled);
    assert_eq!(c.listen_addr(), "0.0.0.0:5000");
    assert!(
        c.http
            .tls
            .as_ref()
            .unwrap()
            .certificate
            .as_ref()
            .unwrap()
            .ends_with("tls.crt")
    );
    let auth = c.auth.unwrap();
    assert_eq!(auth.anonymouspull, ["public/**"]);
    let rules = auth.access.unwrap();
    assert_eq!(rules.len(), 2, "the pull user gets its own pull rule");
    assert_eq!(rules[1].users, ["dockyard-pull"]);
    assert_eq!(auth.pullonly, ["dockyard-pull"]);
    // Metrics on registry:2's debug listener, outside the Service.
    assert_eq!(c.http.debug.addr.as_deref(), Some(":5001"));
    assert!(c.http.debug.prometheus.enabled);
    assert!(c.ui.enabled(), "the web UI is on by default");
}

#[test]
fn the_web_ui_can_be_turned_off() {
    let d = desired(json!({"ui": {"enabled": false}}), &[]);
    let loaded = crate::config::Config::parse(&config_yaml(&d), vec![]).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert!(!loaded.config.ui.enabled());
    let on = desired(json!({"ui": {"enabled": true}}), &[]);
    assert!(
        !config_yaml(&on).contains("ui:"),
        "the default is left to the server"
    );
}

#[test]
fn the_pull_user_may_only_pull_with_or_without_rules() {
    for spec in [
        json!({"auth": {"users": [{"username": "alice", "passwordSecretRef": {"name": "pw", "key": "p"}}]}}),
        json!({"auth": {"users": [{"username": "alice", "passwordSecretRef": {"name": "pw", "key": "p"}}],
               "access": [{"users": ["*"], "repositories": ["**"], "actions": ["pull", "push", "delete"]}]}}),
    ] {
        let d = desired(spec.clone(), &[("pw", &[("p", "secret")])]);
        let c = crate::config::Config::parse(&config_yaml(&d), vec![])
            .unwrap()
            .config;
        let auth = c.auth.unwrap();
        let policy = crate::auth::Policy {
            anonymous_pull: auth.anonymouspull,
            rules: auth.access,
            pull_only: auth.pullonly,
        };
        let puller = crate::auth::Identity::User("dockyard-pull".into());
        let alice = crate::auth::Identity::User("alice".into());
        use crate::auth::Action::*;
        assert!(policy.allows(&puller, Pull, "any/repo"), "{spec}");
        assert!(!policy.allows(&puller, Push, "any/repo"), "{spec}");
        assert!(!policy.allows(&puller, Delete, "any/repo"), "{spec}");
        assert!(policy.allows(&alice, Delete, "any/repo"), "{spec}");
    }
}

#[test]
fn the_workload_is_production_shaped() {
    let d = desired(
        json!({"auth": {"users": [{"username": "a", "passwordSecretRef": {"name": "pw", "key": "p"}}]}}),
        &[("pw", &[("p", "x")])],
    );
    let dep = serde_json::to_value(children(&d).0.deployment).unwrap();
    let spec = &dep["spec"];
    assert_eq!(
        spec["strategy"]["type"], "Recreate",
        "a ReadWriteOnce volume cannot be shared during a rollout"
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["automountServiceAccountToken"], false);
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "example.test/dockyard:1");
    assert_eq!(
        c["args"],
        json!(["serve", "/etc/dockyard/config/config.yml"])
    );
    assert_eq!(
        c["securityContext"],
        json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "registry", "scheme": "HTTPS"})
    );
    let volumes: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(volumes, ["config", "data", "tmp", "htpasswd", "tls"]);
    assert_eq!(pod["volumes"][4]["secret"]["secretName"], "reg-tls");
    assert!(spec["template"]["metadata"]["annotations"]["dockyard.dev/config-hash"].is_string());
    assert_eq!(
        spec["template"]["metadata"]["annotations"]["prometheus.io/port"],
        "5001"
    );
    assert_eq!(
        c["ports"][1],
        json!({"name": "metrics", "containerPort": 5001, "protocol": "TCP"})
    );
}

#[test]
fn the_volume_outlives_the_registry_unless_asked() {
    let kept = desired(json!({}), &[]);
    let pvc = children(&kept).0.volume.unwrap();
    assert!(pvc.metadata.owner_references.is_none());
    assert_eq!(
        pvc.spec.as_ref().unwrap().access_modes,
        Some(vec!["ReadWriteOnce".to_owned()])
    );
    let deleted = desired(
        json!({"storage": {"filesystem": {"size": "50Gi", "deleteWithRegistry": true, "storageClassName": "fast"}}}),
        &[],
    );
    let pvc = children(&deleted).0.volume.unwrap();
    assert_eq!(pvc.metadata.owner_references.unwrap()[0].uid, "uid-1");
    assert_eq!(
        pvc.spec.unwrap().storage_class_name.as_deref(),
        Some("fast")
    );
}

#[test]
fn pull_secrets_hold_working_docker_credentials() {
    let d = desired(
        json!({"pullSecrets": {"namespaces": ["team", "apps"]}}),
        &[],
    );
    let (children, m) = children(&d);
    assert_eq!(children.pull_secrets.len(), 2);
    let apps = children
        .pull_secrets
        .iter()
        .find(|s| s.metadata.namespace.as_deref() == Some("apps"))
        .unwrap();
    assert_eq!(
        apps.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    assert!(
        apps.metadata.owner_references.is_none(),
        "no owner references across namespaces"
    );
    assert_eq!(
        apps.metadata.labels.as_ref().unwrap()["dockyard.dev/registry-uid"],
        "uid-1"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&apps.data.as_ref().unwrap()[".dockerconfigjson"].0).unwrap();
    // Nodes resolve with the host's resolver: the allocated ClusterIP must be a key.
    let mut hosts: Vec<&String> = config["auths"].as_object().unwrap().keys().collect();
    hosts.sort();
    assert_eq!(
        hosts,
        [
            "10.96.0.5:5000",
            "reg.team.svc.cluster.local:5000",
            "reg.team.svc:5000"
        ]
    );
    for host in hosts {
        let entry = &config["auths"][host];
        assert_eq!(entry["username"], "dockyard-pull");
        assert_eq!(entry["password"], m.pull_password.as_str());
    }
    let team = children
        .pull_secrets
        .iter()
        .find(|s| s.metadata.namespace.as_deref() == Some("team"))
        .unwrap();
    assert!(
        team.metadata.owner_references.is_some(),
        "owned in the Registry's own namespace"
    );
}

#[test]
fn nothing_changes_when_nothing_changed() {
    let d = desired(
        json!({"auth": {"users": [{"username": "a", "passwordSecretRef": {"name": "pw", "key": "p"}}]}, "service": {"clusterIP": "10.96.0.9"}}),
        &[("pw", &[("p", "x")])],
    );
    let a = at(&d, "10.96.0.9");
    let first = prepare(&d, &a, &Existing::default(), NOW, &Default::default()).unwrap();
    let SelfSigned { ca, serving, sans } = first.self_signed.clone().unwrap();
    assert!(sans.ends_with(",10.96.0.9"), "{sans}");
    let existing = Existing {
        htpasswd: first.htpasswd.clone(),
        pull_password: Some(first.pull_password.clone()),
        http_secret: None,
        tls: ExistingTls {
            ca: Some(ca),
            ca_damaged: false,
            serving: Some(ExistingServing {
                cert: serving,
                sans,
            }),
        },
    };
    let damaged = Existing {
        tls: ExistingTls {
            ca: None,
            ca_damaged: true,
            serving: existing.tls.serving.clone(),
        },
        ..existing.clone()
    };
    assert!(matches!(
        prepare(&d, &a, &damaged, NOW, &Default::default()),
        Err(crate::operator::pki::PkiError::DamagedCa)
    ));
    let again = prepare(&d, &a, &existing, NOW + 3600, &Default::default()).unwrap();
    assert_eq!(again, first, "same hashes, passwords and certificates");
    // A new ClusterIP means a new serving certificate, signed by the same CA.
    let moved = at(&d, "10.96.0.10");
    let renewed = prepare(&d, &moved, &existing, NOW + 3600, &Default::default()).unwrap();
    assert_eq!(
        renewed.self_signed.as_ref().unwrap().ca,
        first.self_signed.as_ref().unwrap().ca
    );
    assert_ne!(
        renewed.self_signed.unwrap().serving,
        first.self_signed.unwrap().serving
    );
}

#[test]
fn certificates_cover_the_allocated_address() {
    let d = desired(
        json!({"tls": {"certManager": {"issuerRef": {"name": "ca-issuer"}}}}),
        &[],
    );
    let (children, _) = children(&d);
    let spec = &children.certificate.unwrap().data["spec"];
    assert_eq!(spec["ipAddresses"], json!(["10.96.0.5"]));
    assert_eq!(spec["dnsNames"][3], "reg.team.svc.cluster.local");
    let (self_signed, _) = self::children(&desired(json!({}), &[]));
    let sans = &self_signed.tls.unwrap().metadata.annotations.unwrap()["dockyard.dev/sans"];
    assert!(sans.ends_with(",10.96.0.5"), "{sans}");
}

#[test]
fn the_ca_outlives_the_registry_unless_asked() {
    let (kept, _) = children(&desired(json!({}), &[]));
    assert!(kept.ca.unwrap().metadata.owner_references.is_none());
    let d = desired(
        json!({"tls": {"selfSigned": {"deleteWithRegistry": true}}}),
        &[],
    );
    let (owned, _) = children(&d);
    assert_eq!(
        owned.ca.unwrap().metadata.owner_references.unwrap()[0].uid,
        "uid-1"
    );
}

#[test]
fn stale_secrets_are_the_ones_not_built() {
    let d = desired(
        json!({"tls": {"certManager": {"issuerRef": {"name": "x"}}}, "pullSecrets": {"namespaces": ["team", "apps"]}}),
        &[],
    );
    let (c, _) = children(&d);
    let mut wanted = wanted_secrets(&d, &c);
    wanted.sort();
    // No htpasswd (no users), no CA; the TLS Secret is cert-manager's to write.
    assert_eq!(wanted, ["reg-pull", "reg-pull-credentials", "reg-tls"]);
}
