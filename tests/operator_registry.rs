//! The Registry reconcile pipeline against a real kube-apiserver + etcd: every child with
//! owner references and one field manager, status conditions, no churn when nothing
//! changed, password changes re-rendering the htpasswd Secret, drift restored, invalid
//! specs reported, CEL admission messages, and pull Secrets cleaned up on delete.

#[allow(
    dead_code,
    unused_imports,
    reason = "each test crate uses a subset of the shared helpers"
)]
mod common;
#[path = "operator_registry/tls.rs"]
mod tls;

use std::sync::Arc;

use common::kube::KubeApi;
use dockyard::operator::crd::Registry;
use dockyard::operator::metrics::Metrics;
use dockyard::operator::registry::reconcile;
use dockyard::operator::{Context, MANAGER};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use kube::api::{Api, DeleteParams};
use kube::runtime::events::Reporter;

const CRDS: &str = include_str!("../crds/dockyard.dev.yaml");

async fn context(kube: &KubeApi) -> Arc<Context> {
    let kubeconfig = kube::config::Kubeconfig::read_from(kube.kubeconfig_path()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    Arc::new(Context {
        client: kube::Client::try_from(config).unwrap(),
        image: "example.test/dockyard:dev".into(),
        metrics: Arc::new(Metrics::new(&mut registry)),
        reporter: Reporter {
            controller: MANAGER.into(),
            instance: None,
        },
        backoff: Default::default(),
        verified: Default::default(),
    })
}

fn setup() -> KubeApi {
    let kube = KubeApi::start();
    let out = kube.apply("crds.yaml", CRDS);
    assert!(out.status.success(), "CRDs: {}", out.stderr);
    kube.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/registries.dockyard.dev",
        "--timeout=30s",
    ]);
    for ns in ["team", "apps"] {
        kube.kubectl(&["create", "namespace", ns]);
    }
    kube.kubectl(&[
        "-n",
        "team",
        "create",
        "secret",
        "generic",
        "pw",
        "--from-literal=alice=first-password",
    ]);
    kube
}

const REGISTRY: &str = r#"
apiVersion: dockyard.dev/v1alpha1
kind: Registry
metadata: {name: reg, namespace: team}
spec:
  auth:
    users:
      - username: alice
        passwordSecretRef: {name: pw, key: alice}
  pullSecrets:
    namespaces: [team, apps]
"#;

async fn get<K>(ctx: &Context, ns: &str, name: &str) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(ctx.client.clone(), ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("{ns}/{name}: {e}"))
}

async fn registry(ctx: &Context) -> Arc<Registry> {
    Arc::new(get::<Registry>(ctx, "team", "reg").await)
}

/// Reconciles the Registry `ns/name` as it is stored now.
async fn reconcile_named(ctx: &Arc<Context>, ns: &str, name: &str) {
    reconcile(Arc::new(get::<Registry>(ctx, ns, name).await), ctx.clone())
        .await
        .unwrap();
}

/// The condition `type_` of the stored Registry `ns/name`.
async fn condition(
    ctx: &Context,
    ns: &str,
    name: &str,
    type_: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let status = get::<Registry>(ctx, ns, name)
        .await
        .status
        .unwrap_or_default();
    status
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition on {ns}/{name}"))
}

fn secret_text(s: &Secret, key: &str) -> String {
    String::from_utf8(s.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_becomes_its_children_and_stays_true() {
    let kube = setup();
    let ctx = context(&kube).await;
    assert!(kube.apply("reg.yaml", REGISTRY).status.success());
    reconcile(registry(&ctx).await, ctx.clone()).await.unwrap();

    // Every child exists, is owned by the Registry and managed by one field manager.
    let reg = registry(&ctx).await;
    let uid = reg.metadata.uid.clone().unwrap();
    let deployment: Deployment = get(&ctx, "team", "reg").await;
    let config: ConfigMap = get(&ctx, "team", "reg-config").await;
    let service: Service = get(&ctx, "team", "reg").await;
    let htpasswd: Secret = get(&ctx, "team", "reg-htpasswd").await;
    let tls: Secret = get(&ctx, "team", "reg-tls").await;
    let ca: Secret = get(&ctx, "team", "reg-ca").await;
    for meta in [
        &deployment.metadata,
        &config.metadata,
        &service.metadata,
        &htpasswd.metadata,
        &tls.metadata,
        &ca.metadata,
    ] {
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Registry", uid.as_str(), Some(true))
        );
        let managers: Vec<_> = meta
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|m| m.manager.clone())
            .collect();
        assert_eq!(managers, ["dockyard"], "{:?}", meta.name);
    }
    let pod = deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("example.test/dockyard:dev")
    );
    let hash = secret_text(&htpasswd, "htpasswd");
    let alice = hash
        .lines()
        .find_map(|l| l.strip_prefix("alice:"))
        .unwrap()
        .to_owned();
    assert!(bcrypt::verify("first-password", &alice).unwrap());
    assert!(secret_text(&tls, "tls.crt").starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(secret_text(&tls, "ca.crt"), secret_text(&ca, "ca.crt"));

    // The volume is not owned: deleting the Registry keeps the images.
    let pvc: PersistentVolumeClaim = get(&ctx, "team", "reg-data").await;
    assert!(pvc.metadata.owner_references.is_none());

    // Pull Secrets in both namespaces, and a finalizer because one is outside the Registry's.
    let pull: Secret = get(&ctx, "apps", "reg-pull").await;
    assert_eq!(
        pull.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    assert!(secret_text(&pull, ".dockerconfigjson").contains("reg.team.svc:5000"));
    assert_eq!(
        reg.metadata.finalizers.as_deref(),
        Some(&["dockyard.dev/pull-secrets".to_owned()][..])
    );

    // Status: endpoint, and Progressing until pods are ready.
    let status = reg.status.clone().unwrap();
    assert_eq!(status.endpoint.as_deref(), Some("reg.team.svc:5000"));
    assert_eq!(status.observed_generation, reg.metadata.generation);
    let condition = |s: &dockyard::operator::crd::RegistryStatus, t: &str| {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.status.clone())
            .unwrap()
    };
    assert_eq!(condition(&status, "Ready"), "False");
    assert_eq!(condition(&status, "Progressing"), "True");

    // The Service's ClusterIP is allocated by the API server when it is created; the
    // Service event reconciles again and the serving certificate gains the IP. After that,
    // no churn: another reconcile rewrites nothing.
    reconcile(registry(&ctx).await, ctx.clone()).await.unwrap();
    let ip = get::<Service>(&ctx, "team", "reg")
        .await
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    let tls: Secret = get(&ctx, "team", "reg-tls").await;
    assert!(
        tls.metadata.annotations.as_ref().unwrap()["dockyard.dev/sans"].ends_with(&ip),
        "SANs lack {ip}"
    );
    let deployment: Deployment = get(&ctx, "team", "reg").await;
    let htpasswd: Secret = get(&ctx, "team", "reg-htpasswd").await;
    let versions = |d: &Deployment, h: &Secret, t: &Secret| {
        (
            d.metadata.resource_version.clone(),
            h.metadata.resource_version.clone(),
            t.metadata.resource_version.clone(),
        )
    };
    let before = versions(&deployment, &htpasswd, &tls);
    reconcile(registry(&ctx).await, ctx.clone()).await.unwrap();
    let after = versions(
        &get(&ctx, "team", "reg").await,
        &get(&ctx, "team", "reg-htpasswd").await,
        &get(&ctx, "team", "reg-tls").await,
    );
    assert_eq!(before, after, "nothing changed, nothing rewritten");

    // The kubelet's part, done by hand: the pod is ready, so the Registry is Ready.
    kube.kubectl(&[
        "-n", "team", "patch", "deployment", "reg", "--subresource=status", "--type=merge", "-p",
        r#"{"status":{"observedGeneration":1,"replicas":1,"updatedReplicas":1,"readyReplicas":1,"availableReplicas":1}}"#,
    ]);
    reconcile(registry(&ctx).await, ctx.clone()).await.unwrap();
    let status = registry(&ctx).await.status.clone().unwrap();
    assert_eq!(condition(&status, "Ready"), "True");
    assert_eq!(status.ready_replicas, Some(1));
    kube.kubectl(&[
        "-n",
        "team",
        "wait",
        "--for=condition=Ready",
        "registry/reg",
        "--timeout=5s",
    ]);

    // A password change re-renders the htpasswd Secret.
    kube.kubectl(&[
        "-n",
        "team",
        "patch",
        "secret",
        "pw",
        "--type=merge",
        "-p",
        r#"{"stringData":{"alice":"second-password"}}"#,
    ]);
    reconcile(registry(&ctx).await, ctx.clone()).await.unwrap();
    let text = secret_text(&get(&ctx, "team", "reg-htpasswd").await, "htpasswd");
    let alice = text
        .lines()
        .find_map(|l| l.strip_prefix("alice:"))
        .unwrap()
        .to_owned();
    assert!(bcrypt::verify("second-password", &alice).unwrap());

    // Drift is corrected: a deleted or edited child comes back as built.
    kube.kubectl(&["-n", "team", "delete", "configmap", "reg-config"]);
    kube.kubectl(&["-n", "team", "scale", "deployment", "reg", "--replicas=5"]);
    reconcile(registry(&ctx).await, ctx.clone()).await.unwrap();
    let _: ConfigMap = get(&ctx, "team", "reg-config").await;
    let replicas = get::<Deployment>(&ctx, "team", "reg")
        .await
        .spec
        .unwrap()
        .replicas;
    assert_eq!(replicas, Some(1));

    // Dropping a namespace from pullSecrets removes its Secret and the finalizer.
    kube.kubectl(&[
        "-n",
        "team",
        "patch",
        "registry",
        "reg",
        "--type=merge",
        "-p",
        r#"{"spec":{"pullSecrets":{"namespaces":["team"]}}}"#,
    ]);
    reconcile(registry(&ctx).await, ctx.clone()).await.unwrap();
    assert!(
        Api::<Secret>::namespaced(ctx.client.clone(), "apps")
            .get_opt("reg-pull")
            .await
            .unwrap()
            .is_none()
    );
    assert!(registry(&ctx).await.metadata.finalizers.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_registry_removes_pull_secrets_elsewhere_and_keeps_the_volume() {
    let kube = setup();
    let ctx = context(&kube).await;
    assert!(kube.apply("reg.yaml", REGISTRY).status.success());
    reconcile(registry(&ctx).await, ctx.clone()).await.unwrap();
    let api: Api<Registry> = Api::namespaced(ctx.client.clone(), "team");
    api.delete("reg", &DeleteParams::default()).await.unwrap();
    // The finalizer holds it until the operator has cleaned up.
    let deleting = registry(&ctx).await;
    assert!(deleting.metadata.deletion_timestamp.is_some());
    reconcile(deleting, ctx.clone()).await.unwrap();
    assert!(
        api.get_opt("reg").await.unwrap().is_none(),
        "finalizer released"
    );
    assert!(
        Api::<Secret>::namespaced(ctx.client.clone(), "apps")
            .get_opt("reg-pull")
            .await
            .unwrap()
            .is_none()
    );
    let pvc: PersistentVolumeClaim = get(&ctx, "team", "reg-data").await;
    assert!(
        pvc.metadata.owner_references.is_none(),
        "garbage collection will not take the images"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_registries_are_refused_or_reported() {
    let kube = setup();
    let ctx = context(&kube).await;
    for (spec, message) in [
        (
            "storage: {filesystem: {size: 1Gi}, s3: {bucket: b}}",
            "set only one of storage.filesystem and storage.s3",
        ),
        (
            "tls: {selfSigned: {}, disabled: true}",
            "choose one TLS mode",
        ),
        (
            "replicas: 3",
            "replicas > 1 needs storage every replica can share",
        ),
        (
            "storage: {s3: {bucket: \"\"}}",
            "storage.s3.bucket must name a bucket",
        ),
        (
            "auth: {users: [{username: \"a:b\", passwordSecretRef: {name: pw, key: k}}]}",
            "usernames may not be empty",
        ),
    ] {
        let yaml = format!(
            "apiVersion: dockyard.dev/v1alpha1\nkind: Registry\nmetadata: {{name: bad, namespace: team}}\nspec:\n  {spec}\n"
        );
        let out = kube.apply("bad.yaml", &yaml);
        assert!(!out.status.success(), "accepted: {spec}");
        assert!(out.stderr.contains(message), "{spec}: {}", out.stderr);
    }
    // What admission cannot know is reported on the resource.
    let missing = "apiVersion: dockyard.dev/v1alpha1\nkind: Registry\nmetadata: {name: lost, namespace: team}\nspec:\n  auth: {users: [{username: bob, passwordSecretRef: {name: nope, key: bob}}]}\n";
    assert!(kube.apply("lost.yaml", missing).status.success());
    reconcile_named(&ctx, "team", "lost").await;
    let degraded = condition(&ctx, "team", "lost", "Degraded").await;
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "SecretNotFound")
    );
    assert!(degraded.message.contains("\"nope\""));
    assert!(
        Api::<Deployment>::namespaced(ctx.client.clone(), "team")
            .get_opt("lost")
            .await
            .unwrap()
            .is_none()
    );
    let events = kube.kubectl(&["-n", "team", "get", "events.events.k8s.io", "-o", "json"]);
    assert!(
        events.contains("SecretNotFound"),
        "no Warning event: {events}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_example_applies_and_reconciles() {
    let kube = setup();
    let ctx = context(&kube).await;
    let out = kube.apply("example.yaml", include_str!("../examples/registry.yaml"));
    assert!(out.status.success(), "{}", out.stderr);
    reconcile_named(&ctx, "registry", "main").await;
    let status = get::<Registry>(&ctx, "registry", "main")
        .await
        .status
        .unwrap();
    assert_eq!(status.endpoint.as_deref(), Some("main.registry.svc:5000"));
    let degraded = condition(&ctx, "registry", "main", "Degraded").await;
    assert_eq!(degraded.status, "False", "{}", degraded.message);
    let pull: Secret = get(&ctx, "registry", "main-pull").await;
    assert_eq!(
        pull.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    let pvc: PersistentVolumeClaim = get(&ctx, "registry", "main-data").await;
    assert_eq!(
        pvc.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0,
        "20Gi"
    );
}
