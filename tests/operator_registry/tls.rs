//! TLS modes of a Registry against the real API server: cert-manager (missing and
//! installed) and a damaged self-signed CA.

use super::*;

/// cert-manager's Certificate CRD, reduced to what the API server needs to store objects.
pub(crate) const CERT_MANAGER_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: certificates.cert-manager.io}
spec:
  group: cert-manager.io
  scope: Namespaced
  names: {plural: certificates, singular: certificate, kind: Certificate}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn cert_manager_mode_says_clearly_when_cert_manager_is_missing() {
    let kube = setup();
    let ctx = context(&kube).await;
    let yaml = "apiVersion: dockyard.dev/v1alpha1\nkind: Registry\nmetadata: {name: cm, namespace: team}\nspec:\n  tls: {certManager: {issuerRef: {name: letsencrypt, kind: ClusterIssuer}}}\n";
    assert!(kube.apply("cm.yaml", yaml).status.success());
    reconcile_named(&ctx, "team", "cm").await;
    let degraded = condition(&ctx, "team", "cm", "Degraded").await;
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "CertManagerNotInstalled")
    );
    assert!(
        degraded.message.contains("cert-manager.io/v1"),
        "{}",
        degraded.message
    );
    // Everything else is in place, waiting for the certificate Secret cert-manager would write.
    let deployment: Deployment = get(&ctx, "team", "cm").await;
    let volumes = deployment
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .volumes
        .unwrap();
    let tls = volumes.iter().find(|v| v.name == "tls").unwrap();
    assert_eq!(
        tls.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("cm-tls")
    );
    assert!(
        Api::<Secret>::namespaced(ctx.client.clone(), "team")
            .get_opt("cm-ca")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_ca_is_reported_not_replaced() {
    let kube = setup();
    let ctx = context(&kube).await;
    let yaml = "apiVersion: dockyard.dev/v1alpha1\nkind: Registry\nmetadata: {name: ca, namespace: team}\nspec: {}\n";
    assert!(kube.apply("ca.yaml", yaml).status.success());
    reconcile_named(&ctx, "team", "ca").await;
    let before: Secret = get(&ctx, "team", "ca-ca").await;
    // Someone strips the CA key: the operator must not mint a new CA that nobody trusts.
    kube.kubectl(&[
        "-n",
        "team",
        "patch",
        "secret",
        "ca-ca",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/data/ca.key"}]"#,
    ]);
    reconcile_named(&ctx, "team", "ca").await;
    let after: Secret = get(&ctx, "team", "ca-ca").await;
    assert_eq!(
        secret_text(&after, "ca.crt"),
        secret_text(&before, "ca.crt")
    );
    assert!(
        after.data.as_ref().unwrap().get("ca.key").is_none(),
        "left as the user made it"
    );
    let degraded = condition(&ctx, "team", "ca", "Degraded").await;
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "CertificateError")
    );
    assert!(
        degraded
            .message
            .contains("delete it to have a new CA generated"),
        "{}",
        degraded.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cert_manager_mode_creates_the_certificate() {
    let kube = setup();
    let ctx = context(&kube).await;
    assert!(
        kube.apply("cert-manager-crd.yaml", CERT_MANAGER_CRD)
            .status
            .success()
    );
    kube.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/certificates.cert-manager.io",
        "--timeout=30s",
    ]);
    let yaml = "apiVersion: dockyard.dev/v1alpha1\nkind: Registry\nmetadata: {name: cm, namespace: team}\nspec:\n  service: {clusterIP: 10.96.7.7}\n  tls: {certManager: {issuerRef: {name: letsencrypt, kind: ClusterIssuer}}}\n";
    assert!(kube.apply("cm.yaml", yaml).status.success());
    reconcile_named(&ctx, "team", "cm").await;
    let cert: serde_json::Value = serde_json::from_str(&kube.kubectl(&[
        "-n",
        "team",
        "get",
        "certificates.cert-manager.io",
        "cm",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(cert["spec"]["secretName"], "cm-tls");
    assert_eq!(
        cert["spec"]["issuerRef"],
        serde_json::json!({"name": "letsencrypt", "kind": "ClusterIssuer", "group": "cert-manager.io"})
    );
    assert_eq!(
        cert["spec"]["ipAddresses"],
        serde_json::json!(["10.96.7.7"])
    );
    assert!(
        cert["spec"]["dnsNames"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("cm.team.svc"))
    );
    assert_eq!(cert["metadata"]["ownerReferences"][0]["kind"], "Registry");
    let degraded = condition(&ctx, "team", "cm", "Degraded").await;
    assert_eq!(degraded.status, "False", "{}", degraded.message);
}
