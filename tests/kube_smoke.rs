//! The real Kubernetes API server the operator tests use (`common::kube`, etcd + kube-apiserver
//! built by `tests/setup.sh`) does what those tests rely on: CustomResourceDefinitions become
//! Established, their `x-kubernetes-validations` CEL rules reject bad objects with the rule's
//! message, valid custom objects are stored and read back, and core objects (Namespace, Secret)
//! work through kubectl with the admin kubeconfig.

use dockyard_testkit as common;

use common::kube::KubeApi;
use serde_json::Value;

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.dockyard.dev
spec:
  group: smoke.dockyard.dev
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    listKind: WidgetList
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [replicas, maxReplicas]
              properties:
                replicas: {type: integer, minimum: 0}
                maxReplicas: {type: integer, minimum: 1}
              x-kubernetes-validations:
                - rule: "self.replicas <= self.maxReplicas"
                  message: "replicas must not exceed maxReplicas"
"#;

const RULE_MESSAGE: &str = "replicas must not exceed maxReplicas";

fn widget(name: &str, replicas: u32, max: u32) -> String {
    format!(
        "apiVersion: smoke.dockyard.dev/v1
kind: Widget
metadata:
  name: {name}
  namespace: default
spec:
  replicas: {replicas}
  maxReplicas: {max}
"
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("kubectl output is not JSON ({e}): {text}"))
}

#[test]
fn crd_with_cel_rule_and_core_objects() {
    let kube = KubeApi::start();
    eprintln!("API server startup: {:?}", kube.startup_time());

    let version = json(&kube.kubectl(&["version", "-o", "json"]));
    assert!(
        version["serverVersion"]["gitVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("v1.")),
        "server version: {version}"
    );

    // The CRD, Established by the API server's own apiextensions controllers.
    let applied = kube.apply("crd.yaml", CRD);
    assert!(applied.status.success(), "apply CRD: {}", applied.stderr);
    kube.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/widgets.smoke.dockyard.dev",
    ]);

    // The CEL rule rejects replicas > maxReplicas, with its message, and nothing is stored.
    let bad = kube.apply_when_served("bad.yaml", &widget("bad", 5, 3));
    assert!(!bad.status.success(), "invalid widget accepted: {bad:?}");
    assert!(
        bad.stderr.contains(RULE_MESSAGE) && bad.stderr.contains("Invalid value"),
        "stderr lacks the CEL rule's message: {}",
        bad.stderr
    );
    eprintln!("rejected as expected: {}", bad.stderr.trim());
    let missing = kube.kubectl_capture(&["get", "widget", "bad"]);
    assert!(
        !missing.status.success() && missing.stderr.contains("NotFound"),
        "rejected widget was stored: {missing:?}"
    );

    // A valid object is stored and read back as it was written.
    let good = kube.apply_when_served("good.yaml", &widget("good", 2, 3));
    assert!(
        good.status.success(),
        "valid widget refused: {}",
        good.stderr
    );
    let stored = json(&kube.kubectl(&["get", "widget", "good", "-o", "json"]));
    assert_eq!(stored["kind"], "Widget");
    assert_eq!(stored["spec"]["replicas"], 2);
    assert_eq!(stored["spec"]["maxReplicas"], 3);
    assert!(
        stored["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty())
    );

    // An update that breaks the rule is refused too (CEL runs on update, not only on create).
    let patch = kube.kubectl_capture(&[
        "patch",
        "widget",
        "good",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":9}}"#,
    ]);
    assert!(
        !patch.status.success() && patch.stderr.contains(RULE_MESSAGE),
        "bad update accepted: {patch:?}"
    );

    // Core objects: a Namespace and a Secret in it.
    kube.kubectl(&["create", "namespace", "smoke"]);
    let ns = json(&kube.kubectl(&["get", "namespace", "smoke", "-o", "json"]));
    assert_eq!(ns["status"]["phase"], "Active");
    kube.kubectl(&[
        "-n",
        "smoke",
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=s3cret",
    ]);
    let secret = json(&kube.kubectl(&["-n", "smoke", "get", "secret", "creds", "-o", "json"]));
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["data"]["password"], "czNjcmV0", "base64 of s3cret");

    // The admin identity really is a client cert in system:masters.
    let whoami = json(&kube.kubectl(&["auth", "whoami", "-o", "json"]));
    assert_eq!(whoami["status"]["userInfo"]["username"], "admin");
    let groups = whoami["status"]["userInfo"]["groups"].to_string();
    assert!(groups.contains("system:masters"), "groups: {groups}");
}
