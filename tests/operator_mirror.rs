//! The RegistryMirror reconcile pipeline, and node configuration seen from the operator,
//! against a real kube-apiserver + etcd: CEL admission with fix-it messages; a mirror becomes
//! its config Secret (upstream credentials from a dockerconfigjson Secret, never in a
//! ConfigMap), Deployment, Service and claim; its node plan is published in the operator's
//! namespace behind a finalizer; node counts follow Nodes and the agents' report Leases;
//! deletion withdraws the plan; a Registry with `nodeTrust` publishes a plan that trusts
//! its CA at its ClusterIP, and withdraws it when switched off.

use dockyard_testkit as common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::kube::KubeApi;
use dockyard::operator::crd::{Registry, RegistryMirror};
use dockyard::operator::metrics::Metrics;
use dockyard::operator::nodeplan::{
    NodePlan, NodeReport, OwnerReport, PLAN_FINALIZER, PLAN_KEY, REPORT_ANNOTATION, REPORT_LABEL,
    plan_name, report_name,
};
use dockyard::operator::{Context, MANAGER, mirror, registry};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::Reporter;
use kube::{Resource, ResourceExt};

const CRDS: &str = include_str!("../crds/dockyard.dev.yaml");
/// Where the operator (and the agents) run: plans and reports live here.
const SYSTEM: &str = "dockyard-system";

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
        SYSTEM.into(),
    ))
}

fn setup() -> KubeApi {
    let kube = KubeApi::start();
    let out = kube.apply("crds.yaml", CRDS);
    assert!(out.status.success(), "CRDs: {}", out.stderr);
    kube.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/registrymirrors.dockyard.dev",
        "crd/registries.dockyard.dev",
        "--timeout=30s",
    ]);
    for ns in ["team", SYSTEM] {
        kube.kubectl(&["create", "namespace", ns]);
    }
    kube
}

async fn get<K>(ctx: &Context, ns: &str, name: &str) -> K
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(ctx.client.clone(), ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("{ns}/{name}: {e}"))
}

async fn reconcile_mirror(ctx: &Arc<Context>, name: &str) -> RegistryMirror {
    let m = get::<RegistryMirror>(ctx, "team", name).await;
    mirror::reconcile(Arc::new(m), ctx.clone()).await.unwrap();
    get::<RegistryMirror>(ctx, "team", name).await
}

fn text(s: &Secret, key: &str) -> String {
    String::from_utf8(s.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

/// The node plan published for `object` of `kind`, if any.
async fn plan(ctx: &Context, kind: &str, uid: &str) -> Option<NodePlan> {
    let cm = Api::<ConfigMap>::namespaced(ctx.client.clone(), SYSTEM)
        .get_opt(&plan_name(kind, uid))
        .await
        .unwrap()?;
    Some(serde_json::from_str(&cm.data.unwrap()[PLAN_KEY]).unwrap())
}

/// Creates a Node named `name` with `labels` (no kubelet: an object for the selection).
fn node(kube: &KubeApi, name: &str, labels: &str) {
    let yaml =
        format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {labels}}}\n");
    let out = kube.apply(&format!("node-{name}.yaml"), &yaml);
    assert!(out.status.success(), "{}", out.stderr);
}

/// Writes the report Lease an agent on `node` would write.
async fn report(ctx: &Context, node: &str, report: &NodeReport) {
    let lease = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": report_name(node), "labels": {REPORT_LABEL: "true"},
            "annotations": {REPORT_ANNOTATION: serde_json::to_string(report).unwrap()}},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": 90,
            "renewTime": Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}
    });
    Api::<Lease>::namespaced(ctx.client.clone(), SYSTEM)
        .patch(
            &report_name(node),
            &PatchParams::apply("test-agent").force(),
            &Patch::Apply(&lease),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_mirrors_are_refused_at_admission_with_how_to_fix_them() {
    let kube = setup();
    for (spec, message) in [
        (
            "upstreams: [{host: docker.io}, {host: ghcr.io}, {host: docker.io}]",
            "spec.upstreams[2]: Duplicate value: {\"host\":\"docker.io\"}",
        ),
        (
            "upstreams: [{host: \"https://docker.io\"}]",
            "upstreams[].host is a registry host as image names spell it",
        ),
        (
            "upstreams: [{host: up.test, url: \"ftp://up.test\"}]",
            "upstreams[].url is the upstream's base URL",
        ),
        (
            "upstreams: [{host: up.test, url: \"https://up.test/v2/library\"}]",
            "no path, query or credentials",
        ),
        (
            "upstreams: [{host: up.test, url: \"http://up.test:5000\"}]",
            "a plain-HTTP upstream url needs insecure: true",
        ),
        (
            "upstreams: [{host: up.test, insecure: true, caSecretRef: {name: ca, key: ca.crt}}]",
            "set either caSecretRef",
        ),
        ("upstreams: []", "should have at least 1 items"),
        (
            "upstreams: [{host: docker.io}]\n  cache: {ttl: a-week}",
            "cache.ttl is a Go duration",
        ),
        (
            "upstreams: [{host: docker.io}]\n  cache: {maxSize: lots}",
            "cache.maxSize is a size",
        ),
        (
            "upstreams: [{host: docker.io}]\n  replicas: 2",
            "replicas > 1 needs a cache every replica can share",
        ),
        (
            "upstreams: [{host: docker.io}]\n  nodes: {runtimes: [containerd, containerd]}",
            "nodes.runtimes lists a runtime twice",
        ),
    ] {
        let yaml = format!(
            "apiVersion: dockyard.dev/v1alpha1\nkind: RegistryMirror\nmetadata: {{name: bad, namespace: team}}\nspec:\n  {spec}\n"
        );
        let out = kube.apply("bad.yaml", &yaml);
        assert!(!out.status.success(), "accepted: {spec}");
        assert!(out.stderr.contains(message), "{spec}: {}", out.stderr);
    }
    let good = "apiVersion: dockyard.dev/v1alpha1\nkind: RegistryMirror\nmetadata: {name: ok, namespace: team}\nspec:\n  upstreams: [{host: docker.io}, {host: \"registry.example.com:5000\", url: \"http://10.0.0.9:5000\", insecure: true}, {host: \"[fd00::1]:5000\"}]\n  cache: {ttl: 1h30m, maxSize: 50Gi}\n";
    let out = kube.apply("good.yaml", good);
    assert!(out.status.success(), "{}", out.stderr);
}

const MIRROR: &str = r#"
apiVersion: dockyard.dev/v1alpha1
kind: RegistryMirror
metadata: {name: hub, namespace: team}
spec:
  upstreams:
    - host: docker.io
      credentialsSecretRef: {name: hub-login}
    - host: upstream.test:5000
      url: http://10.0.0.9:5000
      insecure: true
  cache: {ttl: 72h, maxSize: 20Gi}
  service: {clusterIP: 10.96.7.50}
  nodes:
    nodeSelector: {pool: a}
    runtimes: [containerd]
  ui: {enabled: false}
"#;

const HUB_LOGIN: &str =
    r#"{"auths":{"https://index.docker.io/v1/":{"auth":"aHViLXVzZXI6aHViLXBhc3N3b3Jk"}}}"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_becomes_its_children_and_a_plan_that_nodes_report_on() {
    let kube = setup();
    let ctx = context(&kube).await;
    let login = kube.manifest("hub-login.json", HUB_LOGIN);
    kube.kubectl(&[
        "-n",
        "team",
        "create",
        "secret",
        "generic",
        "hub-login",
        "--type=kubernetes.io/dockerconfigjson",
        &format!("--from-file=.dockerconfigjson={}", login.display()),
    ]);
    assert!(kube.apply("mirror.yaml", MIRROR).status.success());
    node(&kube, "a1", "{pool: a}");
    node(&kube, "a2", "{pool: a}");
    node(&kube, "b1", "{pool: b}");
    let m = reconcile_mirror(&ctx, "hub").await;
    let uid = m.uid().unwrap();

    // The config is a Secret: it holds the upstream credentials, decoded from the docker config.
    let config = get::<Secret>(&ctx, "team", "hub-config").await;
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text(&config, "config.yml")).unwrap();
    let upstreams = &yaml["proxy"]["upstreams"];
    assert_eq!(upstreams[0]["host"], "docker.io");
    assert_eq!(upstreams[0]["urls"][0], "https://registry-1.docker.io");
    assert_eq!(upstreams[0]["username"], "hub-user");
    assert_eq!(upstreams[0]["password"], "hub-password");
    assert_eq!(upstreams[0]["default"], true);
    assert_eq!(upstreams[1]["host"], "upstream.test:5000");
    assert_eq!(upstreams[1]["urls"][0], "http://10.0.0.9:5000");
    assert_eq!(upstreams[1]["insecure"], true);
    assert_eq!(yaml["proxy"]["ttl"], "72h");
    assert_eq!(yaml["proxy"]["maxsize"], "20Gi");
    assert!(
        Api::<ConfigMap>::namespaced(ctx.client.clone(), "team")
            .get_opt("hub-config")
            .await
            .unwrap()
            .is_none(),
        "no credentials in a ConfigMap"
    );
    // The loaded config is one `dockyard serve` accepts.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    std::fs::write(&path, text(&config, "config.yml")).unwrap();
    let loaded =
        dockyard::config::Config::load(Some(&path), std::iter::empty()).expect("serve accepts it");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert!(
        !loaded.config.ui.enabled(),
        "spec.ui.enabled: false turns the UI off"
    );

    let deployment = get::<Deployment>(&ctx, "team", "hub").await;
    let pod = deployment.spec.unwrap().template;
    assert_eq!(
        pod.metadata.unwrap().labels.unwrap()["app.kubernetes.io/name"],
        "dockyard-mirror"
    );
    let volumes = pod.spec.unwrap().volumes.unwrap();
    let config_volume = volumes.iter().find(|v| v.name == "config").unwrap();
    assert_eq!(
        config_volume
            .secret
            .as_ref()
            .unwrap()
            .secret_name
            .as_deref(),
        Some("hub-config")
    );
    let service = get::<Service>(&ctx, "team", "hub").await;
    assert_eq!(
        service.spec.unwrap().cluster_ip.as_deref(),
        Some("10.96.7.50")
    );

    // The plan: each upstream through the mirror at its pinned ClusterIP, with the upstream
    // kept as the fallback and the mirror's CA; published behind a finalizer.
    assert!(m.finalizers().contains(&PLAN_FINALIZER.to_owned()));
    let p = plan(&ctx, "RegistryMirror", &uid)
        .await
        .expect("plan published");
    assert_eq!(p.owner, "RegistryMirror/team/hub");
    assert_eq!(
        p.node_selector,
        BTreeMap::from([("pool".into(), "a".into())])
    );
    let hosts: Vec<(&str, Option<&str>, Option<&str>)> = p
        .entries
        .iter()
        .map(|e| (e.host.as_str(), e.server.as_deref(), e.mirror.as_deref()))
        .collect();
    assert_eq!(
        hosts,
        [
            (
                "docker.io",
                Some("https://registry-1.docker.io"),
                Some("https://10.96.7.50:5000")
            ),
            (
                "upstream.test:5000",
                Some("http://10.0.0.9:5000"),
                Some("https://10.96.7.50:5000")
            ),
        ]
    );
    let ca = text(&get::<Secret>(&ctx, "team", "hub-ca").await, "ca.crt");
    assert!(
        p.entries
            .iter()
            .all(|e| e.ca_pem.as_deref() == Some(ca.as_str()) && e.fallback)
    );
    assert!(p.entries.iter().all(|e| e.runtimes.len() == 1));

    // Status: no agent has reported yet.
    let status = m.status.clone().unwrap();
    assert_eq!(
        status.upstreams.as_deref(),
        Some("docker.io,upstream.test:5000")
    );
    assert_eq!(status.endpoint.as_deref(), Some("10.96.7.50:5000"));
    let nodes = status.nodes.unwrap();
    assert_eq!(
        (nodes.configured, nodes.total, nodes.summary.as_str()),
        (0, 2, "0/2")
    );
    assert!(
        nodes.problems[0]
            .message
            .contains("no report from Dockyard's node agent"),
        "{:?}",
        nodes.problems
    );
    let configured = |m: &RegistryMirror| {
        m.status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == "NodesConfigured")
            .cloned()
            .unwrap()
    };
    assert_eq!(configured(&m).status, "False");

    // One agent carries the plan, the other reports a problem: 1/2 and the reason.
    let owner = |hash: String, ok: bool, problems: Vec<String>| NodeReport {
        owners: BTreeMap::from([(
            p.owner.clone(),
            OwnerReport {
                hash,
                configured: ok,
                problems,
            },
        )]),
        ..Default::default()
    };
    report(&ctx, "a1", &owner(p.hash(), true, vec![])).await;
    report(
        &ctx,
        "a2",
        &owner(
            p.hash(),
            false,
            vec!["containerd has no config_path: set it".into()],
        ),
    )
    .await;
    let m = reconcile_mirror(&ctx, "hub").await;
    let nodes = m.status.clone().unwrap().nodes.unwrap();
    assert_eq!(nodes.summary, "1/2");
    assert_eq!(nodes.problems.len(), 1);
    assert_eq!(
        (
            nodes.problems[0].node.as_str(),
            nodes.problems[0].message.as_str()
        ),
        ("a2", "containerd has no config_path: set it")
    );
    report(&ctx, "a2", &owner(p.hash(), true, vec![])).await;
    let m = reconcile_mirror(&ctx, "hub").await;
    assert_eq!(m.status.clone().unwrap().nodes.unwrap().summary, "2/2");
    assert_eq!(configured(&m).status, "True");
    let printed = kube.kubectl(&["-n", "team", "get", "registrymirror", "hub"]);
    assert!(
        printed.contains("docker.io,upstream.test:5000"),
        "{printed}"
    );
    assert!(printed.contains("2/2"), "{printed}");

    // A spec change is a new plan: the nodes carry the old one until they report again.
    let patch =
        serde_json::json!({"spec": {"cache": {"ttl": "24h"}, "nodes": {"fallback": false}}});
    Api::<RegistryMirror>::namespaced(ctx.client.clone(), "team")
        .patch("hub", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let m = reconcile_mirror(&ctx, "hub").await;
    let nodes = m.status.clone().unwrap().nodes.unwrap();
    assert_eq!(nodes.summary, "0/2");
    assert!(
        nodes.problems[0]
            .message
            .contains("applying the current configuration")
    );
    let newer = plan(&ctx, "RegistryMirror", &uid).await.unwrap();
    assert!(newer.entries.iter().all(|e| !e.fallback));

    // Deleting the mirror withdraws its plan, then lets it go.
    Api::<RegistryMirror>::namespaced(ctx.client.clone(), "team")
        .delete("hub", &DeleteParams::default())
        .await
        .unwrap();
    let m = get::<RegistryMirror>(&ctx, "team", "hub").await;
    assert!(
        m.meta().deletion_timestamp.is_some(),
        "held by the finalizer"
    );
    assert!(plan(&ctx, "RegistryMirror", &uid).await.is_some());
    mirror::reconcile(Arc::new(m), ctx.clone()).await.unwrap();
    let gone = Api::<RegistryMirror>::namespaced(ctx.client.clone(), "team")
        .get_opt("hub")
        .await
        .unwrap();
    assert!(gone.is_none(), "the finalizer was removed");
    assert!(
        plan(&ctx, "RegistryMirror", &uid).await.is_none(),
        "plan withdrawn"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_with_node_trust_publishes_its_ca_for_the_nodes() {
    let kube = setup();
    let ctx = context(&kube).await;
    node(&kube, "n1", "{}");
    let yaml = "apiVersion: dockyard.dev/v1alpha1\nkind: Registry\nmetadata: {name: reg, namespace: team}\nspec:\n  nodeTrust: true\n  service: {clusterIP: 10.96.7.60}\n";
    assert!(kube.apply("reg.yaml", yaml).status.success());
    let reconcile = async |ctx: &Arc<Context>| {
        let r = get::<Registry>(ctx, "team", "reg").await;
        registry::reconcile(Arc::new(r), ctx.clone()).await.unwrap();
        get::<Registry>(ctx, "team", "reg").await
    };
    let r = reconcile(&ctx).await;
    let uid = r.uid().unwrap();
    assert!(r.finalizers().contains(&PLAN_FINALIZER.to_owned()));
    let p = plan(&ctx, "Registry", &uid).await.expect("plan");
    assert_eq!(p.owner, "Registry/team/reg");
    assert_eq!(
        p.entries.len(),
        1,
        "only addresses nodes can use: {:?}",
        p.entries
    );
    let e = &p.entries[0];
    assert_eq!(
        (e.host.as_str(), e.server.as_deref(), e.mirror.as_deref()),
        ("10.96.7.60:5000", Some("https://10.96.7.60:5000"), None)
    );
    let ca = text(&get::<Secret>(&ctx, "team", "reg-ca").await, "ca.crt");
    assert_eq!(e.ca_pem.as_deref(), Some(ca.as_str()));
    assert_eq!(r.status.unwrap().nodes.unwrap().summary, "0/1");

    // Switched off: the plan is withdrawn and the finalizer goes.
    let patch = serde_json::json!({"spec": {"nodeTrust": false}});
    Api::<Registry>::namespaced(ctx.client.clone(), "team")
        .patch("reg", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let r = reconcile(&ctx).await;
    assert!(plan(&ctx, "Registry", &uid).await.is_none());
    assert!(!r.finalizers().contains(&PLAN_FINALIZER.to_owned()));
    assert!(r.status.unwrap().nodes.is_none());

    // A RegistryMirror may not take the Registry's children (same name): its Service now,
    // and the claim holding its images after it is deleted.
    let same = "apiVersion: dockyard.dev/v1alpha1\nkind: RegistryMirror\nmetadata: {name: reg, namespace: team}\nspec:\n  upstreams: [{host: docker.io}]\n";
    assert!(kube.apply("same-name.yaml", same).status.success());
    let name_in_use = |m: RegistryMirror| {
        let degraded = m
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Degraded")
            .unwrap();
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "NameInUse"),
            "{}",
            degraded.message
        );
        degraded.message
    };
    let message = name_in_use(reconcile_mirror(&ctx, "reg").await);
    assert!(
        message.contains("Service reg belongs to a dockyard-registry"),
        "{message}"
    );
    let services = Api::<Service>::namespaced(ctx.client.clone(), "team");
    let owner = services
        .get("reg")
        .await
        .unwrap()
        .metadata
        .owner_references
        .unwrap();
    assert_eq!(owner[0].kind, "Registry", "the Registry keeps its Service");
    Api::<Registry>::namespaced(ctx.client.clone(), "team")
        .delete("reg", &DeleteParams::default())
        .await
        .unwrap();
    let _ = Api::<Service>::namespaced(ctx.client.clone(), "team")
        .delete("reg", &DeleteParams::default())
        .await;
    let message = name_in_use(reconcile_mirror(&ctx, "reg").await);
    assert!(
        message.contains("PersistentVolumeClaim reg-data"),
        "{message}"
    );

    // A plan whose resource went without withdrawing it (finalizer removed by hand) is
    // collected; the plans of live resources stay.
    let yaml = "apiVersion: dockyard.dev/v1alpha1\nkind: RegistryMirror\nmetadata: {name: orphan, namespace: team}\nspec:\n  upstreams: [{host: quay.io}]\n";
    assert!(kube.apply("orphan.yaml", yaml).status.success());
    let orphan_uid = reconcile_mirror(&ctx, "orphan").await.uid().unwrap();
    let live = "apiVersion: dockyard.dev/v1alpha1\nkind: RegistryMirror\nmetadata: {name: live, namespace: team}\nspec:\n  upstreams: [{host: ghcr.io}]\n";
    assert!(kube.apply("live.yaml", live).status.success());
    let live_uid = reconcile_mirror(&ctx, "live").await.uid().unwrap();
    kube.kubectl(&[
        "-n",
        "team",
        "patch",
        "registrymirror",
        "orphan",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    kube.kubectl(&["-n", "team", "delete", "registrymirror", "orphan"]);
    assert!(
        plan(&ctx, "RegistryMirror", &orphan_uid).await.is_some(),
        "left behind"
    );
    let removed = dockyard::operator::nodes::collect_orphans(&ctx.client, SYSTEM)
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert!(plan(&ctx, "RegistryMirror", &orphan_uid).await.is_none());
    assert!(plan(&ctx, "RegistryMirror", &live_uid).await.is_some());

    // A pinned ClusterIP the API server refuses is reported on the resource, not retried.
    let yaml = "apiVersion: dockyard.dev/v1alpha1\nkind: RegistryMirror\nmetadata: {name: off-range, namespace: team}\nspec:\n  upstreams: [{host: docker.io}]\n  service: {clusterIP: 10.0.0.61}\n";
    assert!(kube.apply("off-range.yaml", yaml).status.success());
    let m = reconcile_mirror(&ctx, "off-range").await;
    let degraded = m
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ServiceInvalid")
    );
    assert!(
        degraded.message.contains("10.0.0.61") && degraded.message.contains("fix spec.service"),
        "{}",
        degraded.message
    );
}
