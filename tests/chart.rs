//! The Helm chart `charts/dockyard`: its CRD is the generated one byte for byte, `helm lint`
//! passes, `helm template` renders a hardened operator Deployment that runs the chart's own
//! image, the real API server accepts every rendered object (`--dry-run=server`, then for real),
//! and the ClusterRole and leader-election Role cover what the operator does: `kubectl auth
//! can-i` as its ServiceAccount, and the operator itself run as that ServiceAccount (an
//! impersonating kubeconfig) reconciling a Registry with users, cert-manager TLS and pull
//! Secrets in another namespace without a single "forbidden".

use dockyard_testkit as common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::kube::{KubeApi, tools_bin};
use common::operator::Operator;
use serde::Deserialize;
use serde_yaml::Value;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/dockyard");
const RELEASE: &str = "dockyard";
const NAMESPACE: &str = "dockyard-system";
const SERVICE_ACCOUNT: &str = "system:serviceaccount:dockyard-system:dockyard-operator";

/// `helm` with private cache/config/data dirs, so tests never touch the user's.
fn helm(args: &[&str]) -> String {
    let home = tempfile::tempdir().expect("helm home");
    let mut command = Command::new(tools_bin("helm"));
    for (var, dir) in [
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ] {
        command.env(var, home.path().join(dir));
    }
    common::run(command.args(args))
}

/// `helm template` of the chart as release `dockyard` in `dockyard-system`, with `--set`s.
fn render(sets: &[&str]) -> String {
    let mut args = vec!["template", RELEASE, CHART, "--namespace", NAMESPACE];
    for set in sets {
        args.extend(["--set", set]);
    }
    helm(&args)
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn env_value<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_sequence()
        .and_then(|env| env.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("no env {name} in {container:?}"))
}

#[test]
fn chart_crd_is_the_generated_one() {
    let generated = fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/dockyard.dev.yaml"
    ))
    .expect("read crds/dockyard.dev.yaml");
    let in_chart = fs::read(Path::new(CHART).join("crds/dockyard.dev.yaml"))
        .expect("read charts/dockyard/crds/dockyard.dev.yaml");
    assert!(
        generated == in_chart,
        "charts/dockyard/crds/dockyard.dev.yaml differs from crds/dockyard.dev.yaml: \
         cp crds/dockyard.dev.yaml charts/dockyard/crds/"
    );
}

#[test]
fn chart_lints_and_renders_a_hardened_operator() {
    let lint = helm(&["lint", "--strict", CHART]);
    assert!(lint.contains("0 chart(s) failed"), "{lint}");

    let docs = documents(&render(&[]));
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ] {
        assert!(kinds.contains(&kind), "{kind} not rendered: {kinds:?}");
    }
    assert!(
        !kinds.contains(&"ServiceMonitor"),
        "ServiceMonitor is off by default"
    );

    let deployment = find(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "dockyard-operator");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    let image = container["image"].as_str().expect("image");
    assert_eq!(
        image, "ghcr.io/dockyard-dev/dockyard:0.1.0",
        "tag defaults to appVersion"
    );
    assert_eq!(env_value(container, "DOCKYARD_IMAGE")["value"], image);
    assert_eq!(container["args"][0], "operator");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["runAsUser"], 65532);
    assert_eq!(security["capabilities"]["drop"][0], "ALL");
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        assert_eq!(
            env_value(container, name)["valueFrom"]["fieldRef"]["fieldPath"],
            field
        );
    }
    assert_eq!(
        env_value(container, "DOCKYARD_LEASE_NAME")["value"],
        "dockyard-operator"
    );
    assert_eq!(
        env_value(container, "DOCKYARD_METRICS_ADDR")["value"],
        "0.0.0.0:8080"
    );

    // Values reach the objects: image, replicas, namespace, port, scheduling, ServiceMonitor.
    let docs = documents(&render(&[
        "image.repository=registry.example/dockyard",
        "image.tag=v9",
        "replicas=2",
        "watchNamespace=team-a",
        "metrics.port=9090",
        "nodeSelector.pool=system",
        "serviceMonitor.enabled=true",
    ]));
    let deployment = find(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "registry.example/dockyard:v9");
    assert_eq!(
        env_value(container, "DOCKYARD_IMAGE")["value"],
        "registry.example/dockyard:v9"
    );
    assert_eq!(
        env_value(container, "DOCKYARD_WATCH_NAMESPACE")["value"],
        "team-a"
    );
    assert_eq!(
        env_value(container, "DOCKYARD_METRICS_ADDR")["value"],
        "0.0.0.0:9090"
    );
    assert_eq!(pod["nodeSelector"]["pool"], "system");
    assert_eq!(find(&docs, "Service")["spec"]["ports"][0]["port"], 9090);
    let monitor = find(&docs, "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
}

/// A stand-in for cert-manager's Certificate CRD: any object, so server-side apply works.
const CERTIFICATE_CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: certificates.cert-manager.io
spec:
  group: cert-manager.io
  scope: Namespaced
  names: {plural: certificates, singular: certificate, kind: Certificate, listKind: CertificateList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
";

const REGISTRY: &str = "apiVersion: dockyard.dev/v1alpha1
kind: Registry
metadata:
  name: images
  namespace: apps
spec:
  auth:
    users:
      - username: alice
        passwordSecretRef: {name: alice-password, key: password}
  tls:
    certManager:
      issuerRef: {name: ca-issuer}
  pullSecrets:
    namespaces: [team-b]
";

/// `kubectl auth can-i` as the operator's ServiceAccount; `resource` may name a subresource
/// after a slash (`registries.dockyard.dev/status`).
fn can_i(kube: &KubeApi, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((resource, sub)) => (resource, Some(sub)),
        None => (resource, None),
    };
    let subresource = subresource.map(|s| format!("--subresource={s}"));
    let mut args = vec!["auth", "can-i", "--as", SERVICE_ACCOUNT, verb, resource];
    args.extend(subresource.as_deref());
    match namespace {
        Some(ns) => args.extend(["-n", ns]),
        None => args.push("--all-namespaces"),
    }
    let outcome = kube.kubectl_capture(&args);
    outcome.stdout.trim() == "yes"
}

/// Polls `kubectl get ARGS` until it succeeds with a non-empty output; returns the output.
fn wait_get(kube: &KubeApi, args: &[&str], operator: &Operator) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut get = vec!["get"];
    get.extend(args);
    loop {
        let outcome = kube.kubectl_capture(&get);
        if outcome.status.success() && !outcome.stdout.trim().is_empty() {
            return outcome.stdout;
        }
        assert!(
            Instant::now() < deadline,
            "`kubectl get {args:?}` stayed empty: {}\n{}",
            outcome.stderr,
            operator.log()
        );
        thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn chart_applies_and_its_rbac_covers_the_operator() {
    let kube = KubeApi::start();
    let crds = Path::new(CHART).join("crds");
    kube.kubectl(&[
        "apply",
        "--server-side",
        "-f",
        crds.to_str().expect("utf-8 path"),
    ]);
    let certificate_crd = kube.manifest("certificate-crd.yaml", CERTIFICATE_CRD);
    kube.kubectl(&["apply", "-f", certificate_crd.to_str().expect("utf-8 path")]);
    kube.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/registries.dockyard.dev",
        "crd/certificates.cert-manager.io",
    ]);
    for ns in [NAMESPACE, "apps", "team-b"] {
        kube.kubectl(&["create", "namespace", ns]);
    }

    // Every rendered object is admitted, with defaults and with replicas 2 and a watched namespace.
    for (name, sets) in [
        ("default.yaml", vec![]),
        ("custom.yaml", vec!["replicas=2", "watchNamespace=apps"]),
    ] {
        let rendered = kube.manifest(name, &render(&sets));
        let path = rendered.to_str().expect("utf-8 path");
        let dry = kube.kubectl(&["apply", "--dry-run=server", "-f", path]);
        assert!(
            dry.contains("deployment.apps/dockyard-operator created (server dry run)"),
            "{dry}"
        );
    }
    let rendered = kube.manifest("install.yaml", &render(&[]));
    kube.kubectl(&["apply", "-f", rendered.to_str().expect("utf-8 path")]);

    // What the operator does is allowed ...
    let cluster_wide = [
        ("list", "registries.dockyard.dev"),
        ("watch", "registries.dockyard.dev"),
        ("patch", "registries.dockyard.dev"),
        ("patch", "registries.dockyard.dev/status"),
        ("update", "registries.dockyard.dev/finalizers"),
        ("watch", "deployments.apps"),
        ("patch", "deployments.apps"),
        ("create", "services"),
        ("patch", "configmaps"),
        ("patch", "persistentvolumeclaims"),
        ("watch", "secrets"),
        ("delete", "secrets"),
        ("create", "certificates.cert-manager.io"),
        ("patch", "certificates.cert-manager.io"),
        ("list", "certificates.cert-manager.io"),
        ("delete", "certificates.cert-manager.io"),
        ("list", "pods"),
        ("watch", "pods"),
        ("create", "events.events.k8s.io"),
        ("patch", "events.events.k8s.io"),
    ];
    for (verb, resource) in cluster_wide {
        assert!(
            can_i(&kube, verb, resource, None),
            "cannot {verb} {resource}"
        );
    }
    for verb in ["get", "create", "patch"] {
        assert!(
            can_i(&kube, verb, "leases.coordination.k8s.io", Some(NAMESPACE)),
            "cannot {verb} leases in {NAMESPACE}"
        );
    }
    // ... and what it never does is not.
    let refused = [
        ("patch", "leases.coordination.k8s.io", Some("kube-system")),
        ("delete", "deployments.apps", Some("apps")),
        ("create", "pods", Some("apps")),
        ("delete", "registries.dockyard.dev", Some("apps")),
        ("update", "registries.dockyard.dev/status", Some("apps")),
        ("create", "clusterroles.rbac.authorization.k8s.io", None),
        ("get", "nodes", None),
        ("delete", "namespaces", None),
        ("impersonate", "serviceaccounts", None),
    ];
    for (verb, resource, namespace) in refused {
        assert!(
            !can_i(&kube, verb, resource, namespace),
            "may {verb} {resource} in {namespace:?}"
        );
    }

    // The operator itself, as that ServiceAccount, reconciles a Registry that needs every rule.
    let admin = fs::read_to_string(kube.kubeconfig_path()).expect("read kubeconfig");
    let as_operator = admin.replacen(
        "  user:\n",
        &format!("  user:\n    as: {SERVICE_ACCOUNT}\n"),
        1,
    );
    assert_ne!(admin, as_operator, "kubeconfig layout changed");
    let kubeconfig = kube.manifest("operator.kubeconfig", &as_operator);
    kube.kubectl(&[
        "-n",
        "apps",
        "create",
        "secret",
        "generic",
        "alice-password",
        "--from-literal=password=s3cret",
    ]);
    let mut operator = Operator::start_with(
        &kube,
        &kubeconfig,
        "chart-operator",
        NAMESPACE,
        &["--lease-name", "dockyard-operator"],
    );
    operator.wait_ready("leading");
    let holder = kube.kubectl(&[
        "-n",
        NAMESPACE,
        "get",
        "lease",
        "dockyard-operator",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(holder, "chart-operator");
    let applied = kube.apply("registry.yaml", REGISTRY);
    assert!(applied.status.success(), "apply Registry: {applied:?}");

    let instance = "app.kubernetes.io/instance=images";
    for kind in [
        "deployment",
        "service",
        "configmap",
        "secret",
        "persistentvolumeclaim",
    ] {
        wait_get(
            &kube,
            &["-n", "apps", kind, "-l", instance, "-o", "name"],
            &operator,
        );
    }
    wait_get(
        &kube,
        &[
            "-n",
            "apps",
            "certificates.cert-manager.io",
            "images",
            "-o",
            "name",
        ],
        &operator,
    );
    let pull = wait_get(&kube, &["-n", "team-b", "secret", "-o", "name"], &operator);
    assert!(pull.contains("images"), "pull Secrets in team-b: {pull}");
    wait_get(
        &kube,
        &[
            "-n",
            "apps",
            "registry",
            "images",
            "-o",
            "jsonpath={.status.conditions}",
        ],
        &operator,
    );

    operator.settle();
    let log = operator.log();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator was refused something:\n{log}"
    );
    let (status, _) = operator.terminate();
    assert!(status.success(), "exit: {status}\n{}", operator.log());
}
