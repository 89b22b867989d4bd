//! The Helm chart `charts/dockyard`: its CRD is the generated one byte for byte, `helm lint`
//! passes, `helm template` renders a hardened operator Deployment that runs the chart's own
//! image, the real API server accepts every rendered object (`--dry-run=server`, then for real),
//! and the ClusterRole and leader-election Role cover what the operator does: `kubectl auth
//! can-i` as its ServiceAccount, and the operator itself run as that ServiceAccount (an
//! impersonating kubeconfig) reconciling a Registry with users, cert-manager TLS and pull
//! Secrets in another namespace without a single "forbidden". The node agent's DaemonSet is
//! confined (the host directories it needs, no capabilities) and its RBAC only reads plans
//! and Nodes and writes its report Lease: the operator and a real `dockyard node-agent`, each
//! as its own ServiceAccount, configure a node for `examples/registrymirror.yaml`.

use dockyard_testkit as common;

#[path = "chart/agent.rs"]
mod agent;
#[path = "chart/dashboard.rs"]
mod dashboard;
#[path = "chart/rbac.rs"]
mod rbac;

use std::fs;
use std::path::{Path, PathBuf};
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
/// The node agent's ServiceAccount (`<fullname>-node-agent` in node-agent.yaml).
const AGENT_ACCOUNT: &str = "system:serviceaccount:dockyard-system:dockyard-node-agent";
const AGENT: &str = "dockyard-node-agent";

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

/// `helm template` of the chart as release `dockyard` in `dockyard-system`, with `--set`s,
/// for a cluster that serves ValidatingAdmissionPolicy (1.30 or later, as the test API server).
fn render(sets: &[&str]) -> String {
    let mut args = vec![
        "template",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--api-versions",
        "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",
    ];
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

fn find_named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
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
