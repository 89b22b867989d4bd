//! The chart applied to a real API server: every rendered object admitted, the operator's
//! and the node agent's RBAC checked with `kubectl auth can-i`, and both run as their own
//! ServiceAccounts (impersonating kubeconfigs): the operator reconciles a Registry and
//! `examples/registrymirror.yaml`, a real `dockyard node-agent` configures a node for it, and
//! the admission policy keeps the agent to its own node's Lease.

use super::*;
use common::operator::NodeAgent;

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

/// Two replicas on S3: the operator applies a PodDisruptionBudget, and deletes it when the
/// replicas come down to one.
const SCALED_REGISTRY: &str = "apiVersion: dockyard.dev/v1alpha1
kind: Registry
metadata:
  name: scaled
  namespace: apps
spec:
  replicas: 2
  storage:
    s3: {bucket: images, region: eu-west-1}
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
        ("watch", "poddisruptionbudgets.policy"),
        ("patch", "poddisruptionbudgets.policy"),
        ("delete", "poddisruptionbudgets.policy"),
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

    // Scale-out on S3: the budget is created with two replicas and deleted at one.
    let applied = kube.apply("scaled.yaml", SCALED_REGISTRY);
    assert!(
        applied.status.success(),
        "apply scaled Registry: {applied:?}"
    );
    let budgets = [
        "-n",
        "apps",
        "poddisruptionbudget",
        "-l",
        "app.kubernetes.io/instance=scaled",
        "-o",
        "name",
    ];
    wait_get(&kube, &budgets, &operator);
    kube.kubectl(&[
        "-n",
        "apps",
        "patch",
        "registry",
        "scaled",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":1}}"#,
    ]);
    wait_get_until(&kube, &budgets, &operator.log, |out| out.trim().is_empty());

    // examples/registrymirror.yaml: the operator publishes its node plan, and a real node
    // agent, as the agent's ServiceAccount, configures a node's containerd and reports it.
    let applied = kube.apply(
        "registrymirror.yaml",
        include_str!("../../examples/registrymirror.yaml"),
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
    let mut agent = NodeAgent::start(&kube, &agent_kubeconfig, node, NAMESPACE, root.path());
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
