//! A Registry on S3 against the real API server: three replicas become a scale-out
//! Deployment (keys from the Secret as environment and in no ConfigMap, no claim, rolled one
//! pod at a time, spread over nodes), a PodDisruptionBudget that goes when one replica is
//! left, a shared `http.secret` kept across reconciles, a config `dockyard serve` reads as
//! the same bucket, and the storage in the status and in `kubectl get`.

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::ListParams;

use super::*;

const SPEC: &str = r#"
apiVersion: dockyard.dev/v1alpha1
kind: Registry
metadata: {name: shared, namespace: team}
spec:
  replicas: 3
  storage:
    s3:
      bucket: images
      endpoint: http://minio.storage.svc:9000
      region: us-east-1
      rootDirectory: team-a
      credentialsSecretRef: {name: minio-keys}
      gc: {interval: 12h, deleteUntagged: true}
"#;

const ACCESS_KEY: &str = "AKIA-TEAM-A";
const SECRET_KEY: &str = "s3-secret-never-in-a-configmap";

/// The environment of the registry container as the kubelet would resolve it.
async fn resolved_env(ctx: &Context, deployment: &Deployment) -> Vec<(String, String)> {
    let container = &deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let mut env = Vec::new();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => {
                let r = from
                    .secret_key_ref
                    .as_ref()
                    .expect("only Secret references");
                secret_text(&get::<Secret>(ctx, "team", &r.name).await, &r.key)
            }
            _ => String::new(),
        };
        env.push((var.name.clone(), value));
    }
    env
}

async fn budget(ctx: &Context, name: &str) -> Option<PodDisruptionBudget> {
    Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), "team")
        .get_opt(name)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_on_s3_scales_out() {
    let kube = setup();
    let ctx = context(&kube).await;
    kube.kubectl(&[
        "-n",
        "team",
        "create",
        "secret",
        "generic",
        "minio-keys",
        &format!("--from-literal=accessKey={ACCESS_KEY}"),
        &format!("--from-literal=secretKey={SECRET_KEY}"),
    ]);
    let out = kube.apply("shared.yaml", SPEC);
    assert!(out.status.success(), "{}", out.stderr);
    reconcile_named(&ctx, "team", "shared").await;

    let deployment: Deployment = get(&ctx, "team", "shared").await;
    let spec = serde_json::to_value(deployment.spec.as_ref().unwrap()).unwrap();
    assert_eq!(spec["replicas"], 3);
    assert_eq!(
        spec["strategy"],
        serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}})
    );
    let pod = &spec["template"]["spec"];
    let spread = &pod["topologySpreadConstraints"][0];
    assert_eq!(
        (
            &spread["topologyKey"],
            &spread["whenUnsatisfiable"],
            &spread["maxSkew"]
        ),
        (
            &serde_json::json!("kubernetes.io/hostname"),
            &serde_json::json!("ScheduleAnyway"),
            &serde_json::json!(1)
        )
    );
    assert!(
        !pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["persistentVolumeClaim"].is_object()),
        "{pod}"
    );
    let claims = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), "team");
    assert!(claims.get_opt("shared-data").await.unwrap().is_none());
    let env = &pod["containers"][0]["env"];
    let from = |name: &str| {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["valueFrom"]["secretKeyRef"].clone())
            .unwrap_or_else(|| panic!("no {name} in {env}"))
    };
    assert_eq!(
        from("REGISTRY_STORAGE_S3_ACCESSKEY"),
        serde_json::json!({"name": "minio-keys", "key": "accessKey", "optional": false})
    );
    assert_eq!(
        from("REGISTRY_STORAGE_S3_SECRETKEY"),
        serde_json::json!({"name": "minio-keys", "key": "secretKey", "optional": false})
    );
    assert_eq!(
        from("REGISTRY_HTTP_SECRET"),
        serde_json::json!({"name": "shared-http-secret", "key": "secret", "optional": false})
    );

    // No ConfigMap in the namespace holds a key.
    let config_maps = Api::<ConfigMap>::namespaced(ctx.client.clone(), "team")
        .list(&ListParams::default())
        .await
        .unwrap();
    for cm in &config_maps.items {
        for value in cm.data.iter().flat_map(|d| d.values()) {
            assert!(
                !value.contains(SECRET_KEY) && !value.contains(ACCESS_KEY),
                "ConfigMap {:?} holds an S3 key",
                cm.metadata.name
            );
        }
    }

    // What `dockyard serve` reads in the pod: the config file and the resolved environment.
    let config: ConfigMap = get(&ctx, "team", "shared-config").await;
    let yaml = &config.data.as_ref().unwrap()["config.yml"];
    let env = resolved_env(&ctx, &deployment).await;
    let loaded = dockyard::config::Config::parse(yaml, env).unwrap();
    let dockyard::config::StorageKind::S3(s3) = loaded
        .config
        .storage_kind(std::path::Path::new("/unused"))
        .unwrap()
    else {
        panic!("not S3: {yaml}");
    };
    assert_eq!((s3.bucket.as_str(), s3.root.as_str()), ("images", "team-a"));
    assert_eq!(
        s3.endpoint_url().as_deref(),
        Some("http://minio.storage.svc:9000")
    );
    assert_eq!(
        (s3.access_key.as_deref(), s3.secret_key.as_deref()),
        (Some(ACCESS_KEY), Some(SECRET_KEY))
    );
    let shared = secret_text(
        &get::<Secret>(&ctx, "team", "shared-http-secret").await,
        "secret",
    );
    assert!(shared.len() >= 32);
    assert_eq!(loaded.config.http.secret.as_deref(), Some(shared.as_str()));
    let tree: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    let gc = &tree["storage"]["maintenance"]["gc"];
    assert_eq!(gc["enabled"], serde_yaml::Value::Bool(true));
    assert_eq!(gc["interval"], serde_yaml::Value::from("12h"));
    assert_eq!(gc["deleteuntagged"], serde_yaml::Value::Bool(true));
    assert_eq!(
        tree["storage"]["redirect"]["disable"],
        serde_yaml::Value::Bool(true)
    );

    // A budget that lets a drain take one pod at a time.
    let pdb = budget(&ctx, "shared").await.expect("a PodDisruptionBudget");
    let pdb_spec = pdb.spec.as_ref().unwrap();
    assert_eq!(
        pdb_spec.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    assert_eq!(
        pdb_spec.selector.as_ref().unwrap().match_labels,
        deployment.spec.as_ref().unwrap().selector.match_labels
    );
    assert_eq!(
        pdb.metadata.owner_references.as_ref().unwrap()[0].kind,
        "Registry"
    );

    // Status and `kubectl get` say where the images are.
    let status = get::<Registry>(&ctx, "team", "shared")
        .await
        .status
        .unwrap();
    assert_eq!(status.storage.as_deref(), Some("s3://images/team-a"));
    let table = kube.kubectl(&["-n", "team", "get", "registry", "shared"]);
    assert!(
        table.contains("STORAGE") && table.contains("s3://images/team-a"),
        "{table}"
    );

    // Nothing changes when nothing changed: the shared secret is kept, no rollout.
    let before = deployment.metadata.resource_version.clone();
    reconcile_named(&ctx, "team", "shared").await;
    let again: Deployment = get(&ctx, "team", "shared").await;
    assert_eq!(again.metadata.resource_version, before);
    let kept = secret_text(
        &get::<Secret>(&ctx, "team", "shared-http-secret").await,
        "secret",
    );
    assert_eq!(kept, shared);

    // Rotated keys roll the pods (the environment is read at start).
    kube.kubectl(&[
        "-n",
        "team",
        "patch",
        "secret",
        "minio-keys",
        "--type=merge",
        "-p",
        r#"{"stringData":{"secretKey":"rotated"}}"#,
    ]);
    reconcile_named(&ctx, "team", "shared").await;
    let hash = |d: &Deployment| {
        d.spec
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
    let rotated: Deployment = get(&ctx, "team", "shared").await;
    assert_ne!(hash(&rotated), hash(&again));

    // Down to one replica: the budget goes, the rollout stays rolling (nothing to share).
    kube.kubectl(&[
        "-n",
        "team",
        "patch",
        "registry",
        "shared",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":1}}"#,
    ]);
    reconcile_named(&ctx, "team", "shared").await;
    assert!(budget(&ctx, "shared").await.is_none(), "the budget stayed");
    let one: Deployment = get(&ctx, "team", "shared").await;
    let spec = one.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(
        spec.strategy.unwrap().type_.as_deref(),
        Some("RollingUpdate")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_budget_the_registry_does_not_own_is_left_alone() {
    let kube = setup();
    let ctx = context(&kube).await;
    // Someone's own budget, named like the Registry, before it exists.
    let theirs = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: solo, namespace: team}\nspec: {minAvailable: 1, selector: {matchLabels: {app: solo}}}\n";
    assert!(kube.apply("pdb.yaml", theirs).status.success());
    let registry = "apiVersion: dockyard.dev/v1alpha1\nkind: Registry\nmetadata: {name: solo, namespace: team}\nspec: {storage: {s3: {bucket: images, region: eu-west-1}}}\n";
    let out = kube.apply("solo.yaml", registry);
    assert!(out.status.success(), "{}", out.stderr);
    reconcile_named(&ctx, "team", "solo").await;
    let pdb = budget(&ctx, "solo")
        .await
        .expect("their budget is still there");
    assert!(pdb.metadata.owner_references.is_none());
    // Without keys the pods use the AWS chain: no key variables at all.
    let deployment: Deployment = get(&ctx, "team", "solo").await;
    let env = resolved_env(&ctx, &deployment).await;
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["REGISTRY_HTTP_SECRET"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_s3_example_applies_and_reconciles() {
    let kube = setup();
    let ctx = context(&kube).await;
    let out = kube.apply(
        "example.yaml",
        include_str!("../../examples/registry-s3.yaml"),
    );
    assert!(out.status.success(), "{}", out.stderr);
    reconcile_named(&ctx, "registry", "shared").await;
    let degraded = condition(&ctx, "registry", "shared", "Degraded").await;
    assert_eq!(degraded.status, "False", "{}", degraded.message);
    let deployment: Deployment = get(&ctx, "registry", "shared").await;
    assert_eq!(deployment.spec.unwrap().replicas, Some(3));
    let pdb = Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), "registry")
        .get_opt("shared")
        .await
        .unwrap();
    assert!(pdb.is_some());
    let status = get::<Registry>(&ctx, "registry", "shared")
        .await
        .status
        .unwrap();
    assert_eq!(
        status.storage.as_deref(),
        Some("s3://registry-images/shared")
    );
}
