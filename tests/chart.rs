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

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
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

/// The node path mounted at `mount_path` in the agent's container: (hostPath, type, readOnly).
fn host_mount(pod: &Value, mount_path: &str) -> (String, String, bool) {
    let mount = pod["containers"][0]["volumeMounts"]
        .as_sequence()
        .and_then(|mounts| mounts.iter().find(|m| m["mountPath"] == mount_path))
        .unwrap_or_else(|| panic!("nothing mounted at {mount_path}: {pod:?}"));
    let volume = pod["volumes"]
        .as_sequence()
        .and_then(|volumes| volumes.iter().find(|v| v["name"] == mount["name"]))
        .unwrap_or_else(|| panic!("no volume for {mount:?}"));
    let host = &volume["hostPath"];
    (
        host["path"].as_str().expect("a hostPath volume").to_owned(),
        host["type"].as_str().expect("a hostPath type").to_owned(),
        mount["readOnly"] == true,
    )
}

#[test]
fn chart_renders_a_confined_node_agent() {
    let docs = documents(&render(&[]));
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ] {
        let object = find_named(&docs, kind, AGENT);
        if kind.ends_with("Binding") {
            assert_eq!(object["subjects"][0]["name"], AGENT, "{kind}");
            assert_eq!(object["roleRef"]["name"], AGENT, "{kind}");
        }
    }
    let daemon_set = find_named(&docs, "DaemonSet", AGENT);
    assert_eq!(daemon_set["metadata"]["namespace"], NAMESPACE);
    let pod = &daemon_set["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], AGENT);
    assert_eq!(pod["hostPID"], false, "hostPID only with nodeAgent.reload");
    assert_eq!(pod["hostNetwork"], Value::Null);
    let everything: Value = serde_yaml::from_str("[{operator: Exists}]").expect("yaml");
    assert_eq!(
        pod["tolerations"], everything,
        "every node, tainted ones too"
    );
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"],
        find(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"],
        "the operator's image"
    );
    let node_agent: Value = serde_yaml::from_str("[node-agent]").expect("yaml");
    assert_eq!(container["args"], node_agent);
    for (name, field) in [
        ("NODE_NAME", "spec.nodeName"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        assert_eq!(
            env_value(container, name)["valueFrom"]["fieldRef"]["fieldPath"],
            field
        );
    }
    for (name, value) in [
        ("DOCKYARD_HOST_ROOT", "/host"),
        ("DOCKYARD_CONTAINERD_CONFIG", "/etc/containerd/config.toml"),
        ("DOCKYARD_STATE_DIR", "/var/lib/dockyard/node-agent"),
        ("DOCKYARD_RELOAD_DOCKER", "false"),
        ("DOCKYARD_RELOAD_CRIO", "false"),
        ("DOCKYARD_RESYNC_SECONDS", "30"),
        ("DOCKYARD_METRICS_ADDR", "0.0.0.0:8081"),
    ] {
        assert_eq!(env_value(container, name)["value"], value, "{name}");
    }
    assert_eq!(container["ports"][0]["containerPort"], 8081);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["privileged"], Value::Null);
    let drop_all: Value = serde_yaml::from_str("[ALL]").expect("yaml");
    assert_eq!(security["capabilities"]["drop"], drop_all);
    assert_eq!(security["capabilities"]["add"], Value::Null);
    // The node's /etc, the state dir and /run (read-only, for pid files and the socket):
    // nothing else of the host.
    assert_eq!(
        host_mount(pod, "/host/etc"),
        ("/etc".into(), "Directory".into(), false)
    );
    assert_eq!(
        host_mount(pod, "/host/var/lib/dockyard/node-agent"),
        (
            "/var/lib/dockyard/node-agent".into(),
            "DirectoryOrCreate".into(),
            false
        )
    );
    assert_eq!(
        host_mount(pod, "/host/run"),
        ("/run".into(), "Directory".into(), true)
    );
    assert_eq!(pod["volumes"].as_sequence().map(Vec::len), Some(3));

    // Values reach the DaemonSet: host paths, containerd's config, state dir, resync, port, reload.
    let docs = documents(&render(&[
        "nodeAgent.hostPaths={/etc,/var/lib/rancher}",
        "nodeAgent.containerdConfig=/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
        "nodeAgent.stateDir=/var/lib/dockyard-agent",
        "nodeAgent.resyncSeconds=120",
        "nodeAgent.metricsPort=9091",
        "nodeAgent.reload=true",
    ]));
    let pod = &find_named(&docs, "DaemonSet", AGENT)["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true, "signals to dockerd and CRI-O");
    let container = &pod["containers"][0];
    for (name, value) in [
        (
            "DOCKYARD_CONTAINERD_CONFIG",
            "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
        ),
        ("DOCKYARD_STATE_DIR", "/var/lib/dockyard-agent"),
        ("DOCKYARD_RELOAD_DOCKER", "true"),
        ("DOCKYARD_RELOAD_CRIO", "true"),
        ("DOCKYARD_RESYNC_SECONDS", "120"),
        ("DOCKYARD_METRICS_ADDR", "0.0.0.0:9091"),
    ] {
        assert_eq!(env_value(container, name)["value"], value, "{name}");
    }
    assert_eq!(container["ports"][0]["containerPort"], 9091);
    for path in ["/etc", "/var/lib/rancher"] {
        assert_eq!(
            host_mount(pod, &format!("/host{path}")),
            (path.into(), "Directory".into(), false)
        );
    }
    assert_eq!(
        host_mount(pod, "/host/var/lib/dockyard-agent"),
        (
            "/var/lib/dockyard-agent".into(),
            "DirectoryOrCreate".into(),
            false
        )
    );
    assert_eq!(pod["volumes"].as_sequence().map(Vec::len), Some(4));

    // Off: no DaemonSet and none of the agent's RBAC; the operator is unchanged.
    let docs = documents(&render(&["nodeAgent.enabled=false"]));
    let agent_objects: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "DaemonSet" || d["metadata"]["name"] == AGENT)
        .collect();
    assert!(agent_objects.is_empty(), "{agent_objects:?}");
    find(&docs, "Deployment");
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

/// `kubectl auth can-i` as the ServiceAccount `who`; `resource` may name a subresource after
/// a slash (`registries.dockyard.dev/status`); no namespace means every namespace.
fn can_i(kube: &KubeApi, who: &str, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((resource, sub)) => (resource, Some(sub)),
        None => (resource, None),
    };
    let subresource = subresource.map(|s| format!("--subresource={s}"));
    let mut args = vec!["auth", "can-i", "--as", who, verb, resource];
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
    wait_get_until(kube, args, &operator.log, |out| !out.trim().is_empty())
}

/// Polls `kubectl get ARGS` until it succeeds with an output `done` accepts; returns the
/// output. A timeout shows the log at `log`.
fn wait_get_until(
    kube: &KubeApi,
    args: &[&str],
    log: &Path,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut get = vec!["get"];
    get.extend(args);
    loop {
        let outcome = kube.kubectl_capture(&get);
        if outcome.status.success() && done(&outcome.stdout) {
            return outcome.stdout;
        }
        assert!(
            Instant::now() < deadline,
            "`kubectl get {args:?}` never got there: {:?} {}\n{}",
            outcome.stdout,
            outcome.stderr,
            fs::read_to_string(log).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(250));
    }
}

/// An admin kubeconfig turned into one that impersonates `who`.
fn kubeconfig_as(kube: &KubeApi, file: &str, who: &str) -> PathBuf {
    let admin = fs::read_to_string(kube.kubeconfig_path()).expect("read kubeconfig");
    let impersonating = admin.replacen("  user:\n", &format!("  user:\n    as: {who}\n"), 1);
    assert_ne!(admin, impersonating, "kubeconfig layout changed");
    kube.manifest(file, &impersonating)
}

/// Like [`kubeconfig_as`], with the node name a pod-bound token of a pod on `node` carries
/// (what the chart's Lease policy checks).
fn kubeconfig_as_on_node(kube: &KubeApi, file: &str, who: &str, node: &str) -> PathBuf {
    let admin = fs::read_to_string(kube.kubeconfig_path()).expect("read kubeconfig");
    let impersonating = admin.replacen(
        "  user:\n",
        &format!(
            "  user:\n    as: {who}\n    as-user-extra:\n      authentication.kubernetes.io/node-name: [{node}]\n"
        ),
        1,
    );
    assert_ne!(admin, impersonating, "kubeconfig layout changed");
    kube.manifest(file, &impersonating)
}

/// `dockyard node-agent` for node `node` whose root is `root`, with `kubeconfig`, the
/// chart's namespace and a 5-second resync; stopped by PID when dropped.
struct NodeAgent {
    child: Option<Child>,
    log: PathBuf,
}

impl NodeAgent {
    fn start(kube: &KubeApi, kubeconfig: &Path, node: &str, root: &Path) -> NodeAgent {
        let log = kube.dir().join(format!("node-agent-{node}.log"));
        let out = fs::File::create(&log).expect("create agent log");
        let err = out.try_clone().expect("clone log handle");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(common::dockyard_bin())
            .arg("node-agent")
            .env("KUBECONFIG", kubeconfig)
            .env("NODE_NAME", node)
            .env("POD_NAMESPACE", NAMESPACE)
            .env("DOCKYARD_HOST_ROOT", root)
            .env("DOCKYARD_METRICS_ADDR", format!("127.0.0.1:{port}"))
            .env("DOCKYARD_RESYNC_SECONDS", "5")
            .env("RUST_LOG", "info,dockyard=debug")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start dockyard node-agent");
        NodeAgent {
            child: Some(child),
            log,
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and the exit status.
    fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("agent still running");
        common::server::signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("wait for the agent") {
                return status;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the node agent ignored SIGTERM:\n{}", self.log());
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            common::server::stop_child(child, Duration::from_secs(5));
        }
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

    // Every rendered object is admitted: with defaults, with replicas 2 and a watched
    // namespace, with the agent's reloads and more host paths, and without the agent.
    for (name, sets) in [
        ("default.yaml", vec![]),
        ("custom.yaml", vec!["replicas=2", "watchNamespace=apps"]),
        (
            "agent.yaml",
            vec![
                "nodeAgent.reload=true",
                "nodeAgent.hostPaths={/etc,/var/lib/rancher}",
            ],
        ),
        ("no-agent.yaml", vec!["nodeAgent.enabled=false"]),
    ] {
        let rendered = kube.manifest(name, &render(&sets));
        let path = rendered.to_str().expect("utf-8 path");
        let dry = kube.kubectl(&["apply", "--dry-run=server", "-f", path]);
        assert!(
            dry.contains("deployment.apps/dockyard-operator created (server dry run)"),
            "{dry}"
        );
        let agent = format!("daemonset.apps/{AGENT} created (server dry run)");
        assert_eq!(
            dry.contains(&agent),
            name != "no-agent.yaml",
            "{name}: {dry}"
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
        ("list", "registrymirrors.dockyard.dev"),
        ("watch", "registrymirrors.dockyard.dev"),
        ("patch", "registrymirrors.dockyard.dev"),
        ("patch", "registrymirrors.dockyard.dev/status"),
        ("update", "registrymirrors.dockyard.dev/finalizers"),
        ("list", "nodes"),
        ("watch", "nodes"),
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
            can_i(&kube, SERVICE_ACCOUNT, verb, resource, None),
            "cannot {verb} {resource}"
        );
    }
    // In its own namespace: the leader-election Lease, the agents' report Leases, and
    // deleting a withdrawn node plan.
    for (verb, resource) in [
        ("get", "leases.coordination.k8s.io"),
        ("create", "leases.coordination.k8s.io"),
        ("patch", "leases.coordination.k8s.io"),
        ("list", "leases.coordination.k8s.io"),
        ("watch", "leases.coordination.k8s.io"),
        ("delete", "configmaps"),
    ] {
        assert!(
            can_i(&kube, SERVICE_ACCOUNT, verb, resource, Some(NAMESPACE)),
            "cannot {verb} {resource} in {NAMESPACE}"
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
        ("patch", "nodes", None),
        ("delete", "configmaps", Some("apps")),
        ("delete", "namespaces", None),
        ("impersonate", "serviceaccounts", None),
    ];
    for (verb, resource, namespace) in refused {
        assert!(
            !can_i(&kube, SERVICE_ACCOUNT, verb, resource, namespace),
            "may {verb} {resource} in {namespace:?}"
        );
    }

    // The node agent reads plans and Nodes and writes its report Lease ...
    for (verb, resource, namespace) in [
        ("get", "configmaps", Some(NAMESPACE)),
        ("list", "configmaps", Some(NAMESPACE)),
        ("watch", "configmaps", Some(NAMESPACE)),
        ("get", "leases.coordination.k8s.io", Some(NAMESPACE)),
        ("create", "leases.coordination.k8s.io", Some(NAMESPACE)),
        ("patch", "leases.coordination.k8s.io", Some(NAMESPACE)),
        ("get", "nodes", None),
        ("list", "nodes", None),
        ("watch", "nodes", None),
    ] {
        assert!(
            can_i(&kube, AGENT_ACCOUNT, verb, resource, namespace),
            "the agent cannot {verb} {resource} in {namespace:?}"
        );
    }
    // ... and nothing else: no Secrets, no writing plans (one agent's forged plan would be
    // applied by every node), no other namespace's Leases, no Nodes or Dockyard resources.
    for (verb, resource, namespace) in [
        ("get", "secrets", Some(NAMESPACE)),
        ("get", "secrets", None),
        ("list", "secrets", None),
        ("create", "configmaps", Some(NAMESPACE)),
        ("patch", "configmaps", Some(NAMESPACE)),
        ("update", "configmaps", Some(NAMESPACE)),
        ("delete", "configmaps", Some(NAMESPACE)),
        ("list", "configmaps", Some("apps")),
        ("delete", "leases.coordination.k8s.io", Some(NAMESPACE)),
        ("get", "leases.coordination.k8s.io", Some("kube-system")),
        ("patch", "leases.coordination.k8s.io", Some("kube-system")),
        ("patch", "nodes", None),
        ("patch", "nodes/status", None),
        ("get", "registries.dockyard.dev", None),
        ("patch", "registries.dockyard.dev", None),
        ("patch", "registrymirrors.dockyard.dev/status", None),
        ("list", "pods", None),
        ("create", "pods", Some(NAMESPACE)),
    ] {
        assert!(
            !can_i(&kube, AGENT_ACCOUNT, verb, resource, namespace),
            "the agent may {verb} {resource} in {namespace:?}"
        );
    }

    // The operator itself, as that ServiceAccount, reconciles a Registry that needs every rule.
    let kubeconfig = kubeconfig_as(&kube, "operator.kubeconfig", SERVICE_ACCOUNT);
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

    // examples/registrymirror.yaml: the operator publishes its node plan, and a real node
    // agent, as the agent's ServiceAccount, configures a node's containerd and reports it.
    let applied = kube.apply(
        "registrymirror.yaml",
        include_str!("../examples/registrymirror.yaml"),
    );
    assert!(
        applied.status.success(),
        "apply examples/registrymirror.yaml: {applied:?}"
    );
    let node = "node-a";
    let node_object = format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {node}}}\n");
    assert!(kube.apply("node.yaml", &node_object).status.success());
    let plans = wait_get(
        &kube,
        &[
            "-n",
            NAMESPACE,
            "configmap",
            "-l",
            "dockyard.dev/node-plan=true",
            "-o",
            "name",
        ],
        &operator,
    );
    assert!(plans.contains("dockyard-plan-registrymirror-"), "{plans}");
    let cluster_ip = wait_get(
        &kube,
        &[
            "-n",
            "registry",
            "service",
            "upstreams",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
        &operator,
    );
    let root = tempfile::tempdir().expect("node root");
    let containerd = root.path().join("etc/containerd");
    fs::create_dir_all(&containerd).expect("create etc/containerd");
    fs::write(
        containerd.join("config.toml"),
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n",
    )
    .expect("write containerd config");
    let agent_kubeconfig = kubeconfig_as_on_node(&kube, "agent.kubeconfig", AGENT_ACCOUNT, node);
    let mut agent = NodeAgent::start(&kube, &agent_kubeconfig, node, root.path());
    let lease = format!("dockyard-node-{node}");
    let holder = wait_get_until(
        &kube,
        &[
            "-n",
            NAMESPACE,
            "lease",
            &lease,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
        &agent.log,
        |out| !out.is_empty(),
    );
    assert_eq!(holder, node);
    // The chart's admission policy keeps an agent to its own node's Lease: not another
    // node's report, not the operator's leader-election Lease.
    for lease in ["dockyard-node-someone-else", "dockyard-operator"] {
        let manifest = kube.manifest(
            &format!("{lease}.yaml"),
            &format!("apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: {lease}, namespace: {NAMESPACE}}}\nspec: {{holderIdentity: {node}}}\n"),
        );
        let mut forged = Command::new(tools_bin("kubectl"));
        forged
            .arg("--kubeconfig")
            .arg(&agent_kubeconfig)
            .args(["apply", "--server-side", "--force-conflicts", "-f"])
            .arg(&manifest);
        let out = common::cmd::run_capture(&mut forged);
        assert!(!out.status.success(), "the agent wrote {lease}");
        assert!(
            out.stderr
                .contains("may write only its own node's report Lease"),
            "{lease}: {}",
            out.stderr
        );
    }
    wait_get_until(
        &kube,
        &[
            "-n",
            "registry",
            "registrymirror",
            "upstreams",
            "-o",
            "jsonpath={.status.nodes.summary}",
        ],
        &operator.log,
        |out| out == "1/1",
    );
    for (host, upstream) in [
        ("docker.io", "https://registry-1.docker.io"),
        ("ghcr.io", "https://ghcr.io"),
        ("quay.io", "https://quay.io"),
    ] {
        let hosts_toml = root
            .path()
            .join("etc/containerd/certs.d")
            .join(host)
            .join("hosts.toml");
        let text = fs::read_to_string(&hosts_toml)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", hosts_toml.display(), agent.log()));
        assert!(text.contains(&format!("server = \"{upstream}\"")), "{text}");
        assert!(
            text.contains(&format!("[host.\"https://{cluster_ip}:5000\"]")),
            "{text}"
        );
    }
    let status = agent.terminate();
    assert!(status.success(), "agent exit: {status}\n{}", agent.log());
    let agent_log = agent.log();
    assert!(
        !agent_log.to_lowercase().contains("forbidden"),
        "the node agent was refused something:\n{agent_log}"
    );
    assert!(
        root.path()
            .join("etc/containerd/certs.d/docker.io/hosts.toml")
            .is_file(),
        "the agent's configuration stays when it stops"
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
