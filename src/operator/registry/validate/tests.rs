//! Validation against the Secrets a Registry refers to.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;

use super::*;
use crate::operator::crd::{Registry, RegistrySpec, TlsMode};

pub fn registry(spec: serde_json::Value) -> Registry {
    let spec: RegistrySpec = serde_json::from_value(spec).unwrap();
    let mut r = Registry::new("reg", spec);
    r.metadata.namespace = Some("team".into());
    r.metadata.uid = Some("uid-1".into());
    r
}

pub fn secret(name: &str, pairs: &[(&str, &str)]) -> (String, Secret) {
    let data = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect();
    let s = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    (name.to_owned(), s)
}

#[test]
fn defaults_give_an_open_self_signed_registry_on_a_volume() {
    let d = validate(&registry(serde_json::json!({})), &BTreeMap::new(), "img:1").unwrap();
    assert_eq!(
        (
            d.workload.name.as_str(),
            d.workload.namespace.as_str(),
            d.workload.replicas,
            d.workload.image.as_str()
        ),
        ("reg", "team", 1, "img:1")
    );
    assert_eq!(d.workload.storage.as_ref().unwrap().size.0, "10Gi");
    assert_eq!(d.storage_location(), "pvc/reg-data");
    assert!(d.auth.is_none());
    assert!(matches!(d.workload.tls, TlsMode::SelfSigned(_)));
    assert_eq!(d.pull_secret_name, "reg-pull");
    assert_eq!(d.workload.owner.uid, "uid-1");
    assert_eq!(d.workload.owner.controller, Some(true));
}

#[test]
fn users_read_their_passwords_from_secrets() {
    let spec = serde_json::json!({"auth": {"users": [
        {"username": "bob", "passwordSecretRef": {"name": "pw", "key": "bob"}},
        {"username": "alice", "passwordSecretRef": {"name": "pw", "key": "alice"}}
    ]}});
    let secrets = BTreeMap::from([secret("pw", &[("alice", "a-pw"), ("bob", "b-pw")])]);
    let d = validate(&registry(spec.clone()), &secrets, "i").unwrap();
    let auth = d.auth.unwrap();
    assert_eq!(
        auth.source,
        UserSource::Passwords(vec![
            ("alice".into(), "a-pw".into()),
            ("bob".into(), "b-pw".into())
        ])
    );

    let e = validate(&registry(spec.clone()), &BTreeMap::new(), "i").unwrap_err();
    assert_eq!(e.reason, "SecretNotFound");
    assert!(e.message.contains("\"pw\""), "{}", e.message);
    let missing_key = BTreeMap::from([secret("pw", &[("alice", "a-pw")])]);
    let e = validate(&registry(spec), &missing_key, "i").unwrap_err();
    assert_eq!(e.reason, "SecretKeyNotFound");
    assert!(e.message.contains("\"bob\""));
}

#[test]
fn problems_only_other_objects_reveal() {
    let own = serde_json::json!({"auth": {"htpasswdSecretRef": {"name": "ht", "key": "htpasswd"}}});
    let md5 = BTreeMap::from([secret("ht", &[("htpasswd", "x:$apr1$a$b")])]);
    let e = validate(&registry(own), &md5, "i").unwrap_err();
    assert_eq!(e.reason, "HtpasswdInvalid");
    assert!(e.message.contains("line 1"), "{}", e.message);

    let reserved = serde_json::json!({"auth": {"users": [{"username": PULL_USER, "passwordSecretRef": {"name": "pw", "key": "k"}}]}});
    let secrets = BTreeMap::from([secret("pw", &[("k", "x")])]);
    assert_eq!(
        validate(&registry(reserved), &secrets, "i")
            .unwrap_err()
            .reason,
        "ReservedUsername"
    );

    let tls = serde_json::json!({"tls": {"secretRef": {"name": "cert"}}});
    let e = validate(
        &registry(tls),
        &BTreeMap::from([secret("cert", &[("tls.crt", "x")])]),
        "i",
    )
    .unwrap_err();
    assert!(e.message.contains("tls.key"), "{}", e.message);
}

#[test]
fn s3_storage_needs_no_claim() {
    let s3 = serde_json::json!({"replicas": 3, "storage": {"s3": {"bucket": "b", "rootDirectory": "/teams/a/"}}});
    let d = validate(&registry(s3), &BTreeMap::new(), "i").unwrap();
    assert_eq!(d.workload.storage, None);
    assert!(d.workload.shares_storage());
    assert_eq!(d.storage_location(), "s3://b/teams/a");
    let missing = serde_json::json!({"storage": {"s3": {"bucket": "b", "credentialsSecretRef": {"name": "keys"}}}});
    let e = validate(&registry(missing), &BTreeMap::new(), "i").unwrap_err();
    assert_eq!(e.reason, "SecretNotFound");
    assert!(
        e.message.starts_with("storage.s3.credentialsSecretRef"),
        "{}",
        e.message
    );
}
