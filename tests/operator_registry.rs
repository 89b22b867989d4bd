//! The Registry reconcile pipeline against a real kube-apiserver + etcd: every child with
//! owner references and one field manager, the allocated ClusterIP in pull Secrets,
//! certificates and status, status conditions that follow the applied Deployment, no churn
//! when nothing changed, password changes re-rendering the htpasswd Secret, drift restored,
//! retry delays reset by a success, and pull Secrets cleaned up on delete. `admission`,
//! `lifecycle`, `s3` (scale-out on a bucket) and `tls` hold the rest.

#[path = "operator_registry/admission.rs"]
mod admission;
use dockyard_testkit as common;
#[path = "operator_registry/lifecycle.rs"]
mod lifecycle;
#[path = "operator_registry/s3.rs"]
mod s3;
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
    Arc::new(Context::new(
        kube::Client::try_from(config).unwrap(),
        "example.test/dockyard:dev".into(),
        Arc::new(Metrics::new(&mut registry)),
        Reporter {
            controller: MANAGER.into(),
            instance: None,
        },
        "default".into(),
    ))
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

    // The CA and the volume are not owned: deleting the Registry keeps the images, and the
    // CA that clients and nodes trust.
    assert!(ca.metadata.owner_references.is_none());
    let pvc: PersistentVolumeClaim = get(&ctx, "team", "reg-data").await;
    assert!(pvc.metadata.owner_references.is_none());

    // Pull Secrets in both namespaces, and a finalizer because one is outside the Registry's.
    // Nodes resolve names with the host's resolver, not cluster DNS: the Service's allocated
    // ClusterIP is a key of the pull Secret, a SAN of the certificate and the endpoint, from
    // the first reconcile on.
    let ip = service.spec.as_ref().unwrap().cluster_ip.clone().unwrap();
    let pull: Secret = get(&ctx, "apps", "reg-pull").await;
    assert_eq!(
        pull.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    let auths: serde_json::Value =
        serde_json::from_str(&secret_text(&pull, ".dockerconfigjson")).unwrap();
    for host in [format!("{ip}:5000"), "reg.team.svc:5000".to_owned()] {
        assert_eq!(
            auths["auths"][&host]["username"], "dockyard-pull",
            "no {host} in {auths}"
        );
    }
    assert!(
        tls.metadata.annotations.as_ref().unwrap()["dockyard.dev/sans"]
            .ends_with(&format!(",{ip}")),
        "SANs lack {ip}"
    );
    assert_eq!(
        reg.metadata.finalizers.as_deref(),
        Some(&["dockyard.dev/pull-secrets".to_owned()][..])
    );

    // Status: endpoint, and Progressing until pods are ready.
    let status = reg.status.clone().unwrap();
    assert_eq!(status.endpoint, Some(format!("{ip}:5000")));
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

    // No churn: another reconcile rewrites nothing.
    reconcile(registry(&ctx).await, ctx.clone()).await.unwrap();
    let tls: Secret = get(&ctx, "team", "reg-tls").await;
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

    // A spec change is not Ready until the Deployment controller has rolled it out: status
    // comes from the Deployment as the apply returned it (a new generation not yet observed),
    // so kstatus-style readers never see Ready for the old spec under the new generation.
    kube.kubectl(&[
        "-n",
        "team",
        "patch",
        "registry",
        "reg",
        "--type=merge",
        "-p",
        r#"{"spec":{"podAnnotations":{"example.test/rev":"2"}}}"#,
    ]);
    reconcile(registry(&ctx).await, ctx.clone()).await.unwrap();
    let changed = registry(&ctx).await;
    let status = changed.status.clone().unwrap();
    assert_eq!(status.observed_generation, changed.metadata.generation);
    assert_eq!(condition(&status, "Ready"), "False", "{status:?}");
    assert_eq!(condition(&status, "Progressing"), "True");

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
async fn a_success_resets_the_retry_delay() {
    let kube = setup();
    let ctx = context(&kube).await;
    assert!(kube.apply("reg.yaml", REGISTRY).status.success());
    let key = "team/reg";
    assert_eq!(ctx.backoff.failed(key).as_secs(), 5);
    assert_eq!(ctx.backoff.failed(key).as_secs(), 10);
    reconcile(registry(&ctx).await, ctx.clone()).await.unwrap();
    assert_eq!(
        ctx.backoff.failed(key).as_secs(),
        5,
        "the next failure after a success waits the shortest delay again"
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
    let service: Service = get(&ctx, "registry", "main").await;
    let ip = service.spec.unwrap().cluster_ip.unwrap();
    assert_eq!(status.endpoint, Some(format!("{ip}:5000")));
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
