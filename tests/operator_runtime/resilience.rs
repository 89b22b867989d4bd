//! The operator process when something around it is wrong: a stored Registry its types
//! cannot read (reported; the others are reconciled), and a shutdown after its lease Role
//! was deleted, as `helm uninstall` does (clean, no warnings).

use super::*;

/// The Registry CRD loosened to accept any spec, as an older or hand-edited CRD might: lets a
/// Registry in that the operator's types cannot read.
const LOOSE_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: registries.dockyard.dev}
spec:
  group: dockyard.dev
  scope: Namespaced
  names: {plural: registries, singular: registry, kind: Registry, shortNames: [reg]}
  versions:
    - name: v1alpha1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

#[test]
fn an_unreadable_registry_is_reported_and_does_not_stall_the_others() {
    let kube = KubeApi::start();
    let crd = kube.manifest("loose-crd.yaml", LOOSE_CRD);
    kube.kubectl(&["apply", "-f", crd.to_str().expect("utf-8 path")]);
    kube.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/registries.dockyard.dev",
    ]);
    let bad = kube.apply_when_served("bad.yaml", &registry("bad", "replicas: three"));
    assert!(bad.status.success(), "apply: {bad:?}");
    let good = kube.apply_when_served("good.yaml", &registry("good", "replicas: 0"));
    assert!(good.status.success(), "apply: {good:?}");

    let mut operator = Operator::start(&kube, "operator-guard", &["--leader-election=false"]);
    operator.wait_ready("leading");
    // The readable Registry is reconciled although the list holds one that is not.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = kube.kubectl(&[
            "get",
            "registry",
            "good",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}",
        ]);
        if !ready.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the readable Registry was never reconciled:\n{}",
            operator.log()
        );
        thread::sleep(Duration::from_millis(200));
    }
    // The unreadable one is named in the log and in a Warning Event on it.
    let line = operator.wait_log_line(&["cannot read this Registry"], Duration::from_secs(30));
    assert!(line.contains("bad"), "{line}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = kube.kubectl(&[
            "get",
            "events.events.k8s.io",
            "--field-selector=regarding.name=bad",
            "-o",
            "jsonpath={range .items[*]}{.type} {.reason} {.note}{\"\\n\"}{end}",
        ]);
        if let Some(event) = events.lines().find(|l| l.contains("InvalidSpec")) {
            assert!(event.starts_with("Warning InvalidSpec"), "{event}");
            assert!(event.contains("\"three\""), "{event}");
            break;
        }
        assert!(Instant::now() < deadline, "no InvalidSpec Event: {events}");
        thread::sleep(Duration::from_millis(200));
    }
    let (status, _) = operator.terminate();
    assert!(status.success(), "exit: {status}\n{}", operator.log());
}

/// Everything the operator does apart from leader election, which a Role grants on its own
/// (as the chart does).
const RBAC_WITHOUT_LEASES: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: operator-work}
rules:
  - apiGroups: ["", apps, policy, dockyard.dev, events.k8s.io, cert-manager.io]
    resources: ["*"]
    verbs: ["*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: operator-work}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: operator-work}
subjects: [{kind: User, name: operator-user}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: operator-leases, namespace: default}
rules:
  # Its own Lease, and the node agents' report Leases it watches (as the chart grants).
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [get, list, watch, create, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: operator-leases, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: operator-leases}
subjects: [{kind: User, name: operator-user}]
"#;

#[test]
fn stopping_after_the_lease_role_is_gone_is_clean() {
    let kube = KubeApi::start();
    install_crds(&kube);
    let rbac = kube.manifest("rbac.yaml", RBAC_WITHOUT_LEASES);
    kube.kubectl(&["apply", "-f", rbac.to_str().expect("utf-8 path")]);
    let admin = fs::read_to_string(kube.kubeconfig_path()).expect("read kubeconfig");
    let as_operator = admin.replacen("  user:\n", "  user:\n    as: operator-user\n", 1);
    assert_ne!(admin, as_operator, "kubeconfig layout changed");
    let kubeconfig = kube.manifest("operator.kubeconfig", &as_operator);
    let mut operator =
        Operator::start_with(&kube, &kubeconfig, "operator-uninstalled", "default", &[]);
    operator.wait_ready("leading");
    assert_eq!(lease_holder(&kube), "operator-uninstalled");

    // `helm uninstall` deletes the Role's binding while the operator pod is still stopping.
    kube.kubectl(&["-n", "default", "delete", "rolebinding", "operator-leases"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while kube
        .kubectl_capture(&[
            "auth",
            "can-i",
            "--as",
            "operator-user",
            "-n",
            "default",
            "patch",
            "leases",
        ])
        .stdout
        .trim()
        == "yes"
    {
        assert!(Instant::now() < deadline, "the RoleBinding still applies");
        thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = operator.terminate();
    let log = operator.log();
    assert!(status.success(), "exit: {status}\n{log}");
    let alarming: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains("DEBUG"))
        .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("orbidden"))
        .collect();
    assert!(
        alarming.is_empty(),
        "warnings or errors at shutdown:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("INFO") && l.contains("expires on its own")),
        "{log}"
    );
}
