//! Builder tests of a Registry on S3: a scale-out Deployment (no claim, rolled one pod at a
//! time, spread over nodes), keys only in the environment, a config `dockyard serve` reads
//! as the same bucket, the shared `http.secret` and the disruption budget.

use serde_json::json;

use super::tests::{children, desired};
use super::*;
use crate::operator::registry::materials::{Existing, prepare};

const KEYS: (&str, &[(&str, &str)]) = (
    "minio-keys",
    &[("accessKey", "AKIAEXAMPLE"), ("secretKey", "wJalrXUtnFEMI")],
);
const CA: (&str, &[(&str, &str)]) = (
    "minio-ca",
    &[(
        "ca.crt",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )],
);

fn s3_spec() -> serde_json::Value {
    json!({
        "replicas": 3,
        "storage": {"deleteEnabled": true, "s3": {
            "bucket": "images", "region": "us-east-1", "endpoint": "https://minio.storage.svc:9000/",
            "rootDirectory": "teams/a", "credentialsSecretRef": {"name": "minio-keys"},
            "caSecretRef": {"name": "minio-ca", "key": "ca.crt"}, "chunkSize": "16Mi",
            "encryption": {"type": "KMS", "keyId": "alias/registry"}, "storageClass": "STANDARD",
            "gc": {"interval": "12h", "grace": "2h", "deleteUntagged": true}
        }}
    })
}

fn value_of(env: &[k8s_openapi::api::core::v1::EnvVar], name: &str) -> serde_json::Value {
    let var = env.iter().find(|e| e.name == name);
    serde_json::to_value(var).unwrap()
}

#[test]
fn the_deployment_scales_out_on_s3() {
    let d = desired(s3_spec(), &[KEYS, CA]);
    let (c, m) = children(&d);
    assert!(c.volume.is_none(), "no claim for S3");
    let dep = serde_json::to_value(&c.deployment).unwrap();
    let spec = &dep["spec"];
    assert_eq!(spec["replicas"], 3);
    assert_eq!(
        spec["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}})
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(
        pod["topologySpreadConstraints"],
        json!([{
            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "reg", "app.kubernetes.io/name": "dockyard-registry"}},
            "matchLabelKeys": ["pod-template-hash"]
        }])
    );
    let volumes: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(volumes, ["config", "tmp", "s3-ca", "tls"]);
    assert_eq!(
        pod["volumes"][2]["secret"],
        json!({"secretName": "minio-ca", "defaultMode": 0o440, "items": [{"key": "ca.crt", "path": "ca.crt"}]})
    );
    let container = &c
        .deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let env = container.env.clone().unwrap();
    let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "REGISTRY_HTTP_SECRET",
            "REGISTRY_STORAGE_S3_ACCESSKEY",
            "REGISTRY_STORAGE_S3_SECRETKEY",
            "SSL_CERT_DIR"
        ]
    );
    assert_eq!(
        value_of(&env, "REGISTRY_STORAGE_S3_SECRETKEY"),
        json!({"name": "REGISTRY_STORAGE_S3_SECRETKEY", "valueFrom": {"secretKeyRef": {"name": "minio-keys", "key": "secretKey", "optional": false}}})
    );
    assert_eq!(
        value_of(&env, "REGISTRY_HTTP_SECRET")["valueFrom"]["secretKeyRef"],
        json!({"name": "reg-http-secret", "key": "secret", "optional": false})
    );
    assert_eq!(
        value_of(&env, "SSL_CERT_DIR")["value"],
        "/etc/ssl/certs:/etc/dockyard/s3-ca"
    );
    // The generated http.secret is a Secret of its own, and wanted.
    let http = c.http_secret.as_ref().unwrap();
    assert_eq!(
        http.data.as_ref().unwrap()["secret"].0,
        m.http_secret.as_ref().unwrap().as_bytes()
    );
    assert!(wanted_secrets(&d, &c).contains(&"reg-http-secret".to_owned()));
}

#[test]
fn no_secret_value_is_in_the_config_and_dockyard_reads_it_as_the_same_bucket() {
    let d = desired(s3_spec(), &[KEYS, CA]);
    let (c, m) = children(&d);
    let yaml = &c.config.data.as_ref().unwrap()["config.yml"];
    for (_, value) in KEYS.1 {
        assert!(!yaml.contains(value), "a key is in the ConfigMap: {yaml}");
    }
    assert!(!yaml.contains(m.http_secret.as_deref().unwrap()));
    // The pod's environment, resolved as the kubelet would.
    let env = vec![
        (
            "REGISTRY_STORAGE_S3_ACCESSKEY".to_owned(),
            "AKIAEXAMPLE".to_owned(),
        ),
        (
            "REGISTRY_STORAGE_S3_SECRETKEY".to_owned(),
            "wJalrXUtnFEMI".to_owned(),
        ),
        ("REGISTRY_HTTP_SECRET".to_owned(), "shared".to_owned()),
    ];
    let loaded = crate::config::Config::parse(yaml, env).unwrap();
    let config = loaded.config;
    let crate::config::StorageKind::S3(o) = config.storage_kind("/unused".as_ref()).unwrap() else {
        panic!("not S3: {yaml}");
    };
    assert_eq!(o.bucket, "images");
    assert_eq!(o.root, "teams/a");
    assert_eq!(
        o.endpoint_url().as_deref(),
        Some("https://minio.storage.svc:9000")
    );
    assert!(o.force_path_style, "an endpoint defaults to path style");
    assert_eq!(
        (o.access_key.as_deref(), o.secret_key.as_deref()),
        (Some("AKIAEXAMPLE"), Some("wJalrXUtnFEMI"))
    );
    assert_eq!(o.chunk_size, 16 << 20);
    assert_eq!(
        (o.encrypt, o.key_id.as_deref()),
        (true, Some("alias/registry"))
    );
    assert_eq!(o.storage_class.as_deref(), Some("STANDARD"));
    assert!(!o.skip_verify);
    assert!(config.storage.delete.enabled);
    assert_eq!(config.http.secret.as_deref(), Some("shared"));
    // Redirects and scheduled collection, in the keys the server reads.
    let tree: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    assert_eq!(
        tree["storage"]["redirect"]["disable"],
        serde_yaml::Value::Bool(true)
    );
    let gc: serde_json::Value =
        serde_json::to_value(&tree["storage"]["maintenance"]["gc"]).unwrap();
    assert_eq!(
        gc,
        json!({"enabled": true, "interval": "12h", "grace": "2h", "deleteuntagged": true, "dryrun": false})
    );
    // Nothing is unknown to the server, and it reads the same gc settings.
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let schedule = config.storage.maintenance.gc.resolve().unwrap().unwrap();
    assert_eq!(schedule.interval, std::time::Duration::from_secs(12 * 3600));
    assert_eq!(schedule.grace, std::time::Duration::from_secs(2 * 3600));
    assert!(schedule.delete_untagged);
    assert!(!config.redirect_enabled());
}

#[test]
fn defaults_leave_the_store_and_collection_to_the_server() {
    let d = desired(json!({"storage": {"s3": {"bucket": "images"}}}), &[]);
    let yaml = config_yaml(&d);
    let tree: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(
        tree["storage"],
        json!({
            "s3": {"bucket": "images"},
            "delete": {"enabled": false},
            "redirect": {"disable": true},
            "maintenance": {"gc": {"enabled": true, "deleteuntagged": false, "dryrun": false}}
        })
    );
    let (c, _) = children(&d);
    let env = c.deployment.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    // No keys: the pods use the AWS chain (IRSA, instance role).
    let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["REGISTRY_HTTP_SECRET"]);
    let redirected = desired(
        json!({"storage": {"s3": {"bucket": "images", "redirect": true, "gc": {"enabled": false}}}}),
        &[],
    );
    let tree: serde_json::Value = serde_yaml::from_str(&config_yaml(&redirected)).unwrap();
    assert_eq!(tree["storage"]["redirect"], json!({"disable": false}));
    assert_eq!(tree["storage"]["maintenance"]["gc"]["enabled"], false);
}

#[test]
fn several_replicas_get_a_disruption_budget_and_one_gets_none() {
    let d = desired(s3_spec(), &[KEYS, CA]);
    let budget = serde_json::to_value(children(&d).0.budget.unwrap()).unwrap();
    assert_eq!(
        budget,
        json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {
                "name": "reg", "namespace": "team",
                "labels": {"app.kubernetes.io/instance": "reg", "app.kubernetes.io/managed-by": "dockyard", "app.kubernetes.io/name": "dockyard-registry"},
                "ownerReferences": [{"apiVersion": "dockyard.dev/v1alpha1", "kind": "Registry", "name": "reg", "uid": "uid-1", "controller": true}]
            },
            "spec": {
                "maxUnavailable": 1,
                "selector": {"matchLabels": {"app.kubernetes.io/instance": "reg", "app.kubernetes.io/name": "dockyard-registry"}},
                "unhealthyPodEvictionPolicy": "AlwaysAllow"
            }
        })
    );
    let single = desired(json!({"storage": {"s3": {"bucket": "images"}}}), &[]);
    assert!(children(&single).0.budget.is_none());
}

#[test]
fn placement_the_spec_sets_wins() {
    let mut spec = s3_spec();
    spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}});
    spec["serviceAccountName"] = json!("registry-irsa");
    let d = desired(spec, &[KEYS, CA]);
    let pod = children(&d)
        .0
        .deployment
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    assert!(pod.topology_spread_constraints.is_none());
    assert!(pod.affinity.is_some());
    assert_eq!(pod.service_account_name.as_deref(), Some("registry-irsa"));
    assert_eq!(
        pod.automount_service_account_token, None,
        "the named ServiceAccount decides (identity webhooks may need its token)"
    );
}

#[test]
fn the_shared_secret_is_kept_and_rotated_keys_roll_the_pods() {
    let d = desired(s3_spec(), &[KEYS, CA]);
    let (first, m) = children(&d);
    let a = Addresses::of(&d.workload, &service(&d));
    let existing = Existing {
        http_secret: m.http_secret.clone(),
        pull_password: Some(m.pull_password.clone()),
        ..Existing::default()
    };
    let again = prepare(&d, &a, &existing, 0, &Default::default()).unwrap();
    assert_eq!(again.http_secret, m.http_secret);
    let hash = |c: &Children| {
        c.deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()["dockyard.dev/config-hash"]
            .clone()
    };
    let rotated = desired(
        s3_spec(),
        &[
            (
                "minio-keys",
                &[("accessKey", "AKIAEXAMPLE"), ("secretKey", "new")],
            ),
            CA,
        ],
    );
    assert_ne!(hash(&children(&rotated).0), hash(&first));
    // A single replica on its own volume has no shared secret.
    let single = desired(json!({}), &[]);
    let (c, m) = children(&single);
    assert!(c.http_secret.is_none() && m.http_secret.is_none());
    let env = &c.deployment.spec.unwrap().template.spec.unwrap().containers[0].env;
    assert!(env.is_none());
}
