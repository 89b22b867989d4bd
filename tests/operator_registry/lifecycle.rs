//! A Registry over its life against the real API server: the addresses nodes use (a
//! NodePort on external hosts) reach the pull Secret and the certificate, the CA survives
//! deletion and re-creation, what keeps a rollout waiting (an unbound claim, an
//! unschedulable pod) is reported, and children no longer wanted are deleted.

use kube::api::{DynamicObject, ListParams};

use super::tls::CERT_MANAGER_CRD;
use super::*;

/// A Registry `name` in `team` with `spec` (YAML flow mapping).
fn registry_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: dockyard.dev/v1alpha1\nkind: Registry\nmetadata: {{name: {name}, namespace: team}}\nspec: {spec}\n"
    )
}

/// What the garbage collector (not running next to a bare API server) would do after the
/// Registry with `uid` is deleted: delete every object in `team` it owns.
async fn collect_garbage(ctx: &Context, uid: &str) {
    let owned =
        |meta: &kube::api::ObjectMeta| meta.owner_references.iter().flatten().any(|o| o.uid == uid);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), "team");
    for s in secrets.list(&ListParams::default()).await.unwrap() {
        if owned(&s.metadata) {
            secrets
                .delete(&s.metadata.name.unwrap(), &DeleteParams::default())
                .await
                .unwrap();
        }
    }
    for (kind, name) in [
        ("service", "keep"),
        ("deployment", "keep"),
        ("configmap", "keep-config"),
    ] {
        kube_delete(ctx, kind, name).await;
    }
}

async fn kube_delete(ctx: &Context, kind: &str, name: &str) {
    let dp = DeleteParams::default();
    let client = ctx.client.clone();
    let result = match kind {
        "service" => Api::<Service>::namespaced(client, "team")
            .delete(name, &dp)
            .await
            .map(|_| ()),
        "deployment" => Api::<Deployment>::namespaced(client, "team")
            .delete(name, &dp)
            .await
            .map(|_| ()),
        _ => Api::<ConfigMap>::namespaced(client, "team")
            .delete(name, &dp)
            .await
            .map(|_| ()),
    };
    result.unwrap_or_else(|e| panic!("delete {kind} {name}: {e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recreated_registry_keeps_its_ca() {
    let kube = setup();
    let ctx = context(&kube).await;
    assert!(
        kube.apply("keep.yaml", &registry_yaml("keep", "{}"))
            .status
            .success()
    );
    reconcile_named(&ctx, "team", "keep").await;
    let ca: Secret = get(&ctx, "team", "keep-ca").await;
    assert!(
        ca.metadata.owner_references.is_none(),
        "garbage collection would take the CA with the Registry"
    );
    let first_ca = secret_text(&ca, "ca.crt");

    let old = get::<Registry>(&ctx, "team", "keep").await;
    Api::<Registry>::namespaced(ctx.client.clone(), "team")
        .delete("keep", &DeleteParams::default())
        .await
        .unwrap();
    collect_garbage(&ctx, old.metadata.uid.as_deref().unwrap()).await;
    assert!(
        Api::<Secret>::namespaced(ctx.client.clone(), "team")
            .get_opt("keep-tls")
            .await
            .unwrap()
            .is_none(),
        "the serving certificate went with the Registry"
    );

    // Created again: the same CA signs the new serving certificate, so clients that trust
    // it keep working; the status names it.
    assert!(
        kube.apply("keep.yaml", &registry_yaml("keep", "{}"))
            .status
            .success()
    );
    reconcile_named(&ctx, "team", "keep").await;
    let ca: Secret = get(&ctx, "team", "keep-ca").await;
    assert_eq!(secret_text(&ca, "ca.crt"), first_ca, "a new CA was made");
    let tls: Secret = get(&ctx, "team", "keep-tls").await;
    assert_eq!(secret_text(&tls, "ca.crt"), first_ca);
    let status = get::<Registry>(&ctx, "team", "keep").await.status.unwrap();
    assert_eq!(status.ca_secret.as_deref(), Some("keep-ca"));

    // Asked for, the CA goes with the Registry like the claim.
    let yaml = registry_yaml("keep", "{tls: {selfSigned: {deleteWithRegistry: true}}}");
    assert!(kube.apply("keep.yaml", &yaml).status.success());
    reconcile_named(&ctx, "team", "keep").await;
    let ca: Secret = get(&ctx, "team", "keep-ca").await;
    let owner = &ca.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Registry", "keep")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_claim_and_an_unschedulable_pod_are_reported() {
    let kube = setup();
    let ctx = context(&kube).await;
    assert!(
        kube.apply("wait.yaml", &registry_yaml("wait", "{}"))
            .status
            .success()
    );
    // No provisioner runs next to a bare API server: the claim stays Pending. A new claim
    // is not reported at once (a WaitForFirstConsumer claim binds only after its pod is
    // scheduled)...
    reconcile_named(&ctx, "team", "wait").await;
    let ready = condition(&ctx, "team", "wait", "Ready").await;
    assert_eq!(ready.status, "False");
    assert_ne!(ready.reason, "ClaimPending", "{}", ready.message);
    // ...but once the scheduler has picked a node for it, its provisioner is what it waits
    // for, and it is.
    kube.kubectl(&[
        "annotate",
        "pvc",
        "-n",
        "team",
        "wait-data",
        "volume.kubernetes.io/selected-node=node-1",
    ]);
    reconcile_named(&ctx, "team", "wait").await;
    let ready = condition(&ctx, "team", "wait", "Ready").await;
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ClaimPending")
    );
    assert!(
        ready
            .message
            .contains("PersistentVolumeClaim wait-data is Pending"),
        "{}",
        ready.message
    );
    let progressing = condition(&ctx, "team", "wait", "Progressing").await;
    assert_eq!(progressing.reason, "ClaimPending");

    // The scheduler's part, done by hand: a registry pod it cannot place.
    let pod = r#"
apiVersion: v1
kind: Pod
metadata:
  name: wait-7d9f-abcde
  namespace: team
  labels: {app.kubernetes.io/name: dockyard-registry, app.kubernetes.io/instance: wait, app.kubernetes.io/managed-by: dockyard}
spec:
  containers: [{name: registry, image: example.test/dockyard:dev}]
"#;
    assert!(kube.apply("pod.yaml", pod).status.success());
    kube.kubectl(&[
        "-n", "team", "patch", "pod", "wait-7d9f-abcde", "--subresource=status", "--type=merge", "-p",
        r#"{"status":{"phase":"Pending","conditions":[{"type":"PodScheduled","status":"False","reason":"Unschedulable","message":"0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."}]}}"#,
    ]);
    reconcile_named(&ctx, "team", "wait").await;
    let ready = condition(&ctx, "team", "wait", "Ready").await;
    assert_eq!(ready.reason, "Unschedulable");
    assert!(
        ready
            .message
            .contains("pod wait-7d9f-abcde cannot be scheduled: 0/1 nodes are available"),
        "{}",
        ready.message
    );
    let events = kube.kubectl(&["-n", "team", "get", "events.events.k8s.io", "-o", "json"]);
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    let event = |reason: &str| {
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["reason"] == reason && e["regarding"]["name"] == "wait")
            .cloned()
            .unwrap_or_else(|| panic!("no {reason} Event: {events}"))
    };
    assert!(
        event("ClaimPending")["note"]
            .as_str()
            .unwrap()
            .contains("wait-data is Pending")
    );
    let unschedulable = event("Unschedulable");
    assert_eq!(unschedulable["type"], "Warning");
    assert!(
        unschedulable["note"]
            .as_str()
            .unwrap()
            .contains("unbound immediate PersistentVolumeClaims")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn children_no_longer_wanted_are_deleted() {
    let kube = setup();
    let out = kube.apply("cert-manager-crd.yaml", CERT_MANAGER_CRD);
    assert!(out.status.success(), "{}", out.stderr);
    kube.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/certificates.cert-manager.io",
        "--timeout=30s",
    ]);
    let ctx = context(&kube).await;
    let spec = "{auth: {users: [{username: alice, passwordSecretRef: {name: pw, key: alice}}]}, tls: {certManager: {issuerRef: {name: issuer}}}}";
    assert!(
        kube.apply("sw.yaml", &registry_yaml("sw", spec))
            .status
            .success()
    );
    reconcile_named(&ctx, "team", "sw").await;
    let resource = dockyard::operator::common::tls::certificate_resource();
    let certificates: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), "team", &resource);
    let certificate = certificates.get("sw").await.unwrap();
    // The Certificate asks for the allocated ClusterIP, like the self-signed certificate.
    let ip = get::<Service>(&ctx, "team", "sw")
        .await
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    assert_eq!(
        certificate.data["spec"]["ipAddresses"],
        serde_json::json!([ip])
    );
    let _: Secret = get(&ctx, "team", "sw-htpasswd").await;

    // Switched to a self-signed certificate and an open registry: the Certificate would keep
    // rewriting sw-tls, and the htpasswd Secret would linger; both go.
    assert!(
        kube.apply("sw.yaml", &registry_yaml("sw", "{}"))
            .status
            .success()
    );
    reconcile_named(&ctx, "team", "sw").await;
    assert!(
        certificates.get_opt("sw").await.unwrap().is_none(),
        "the Certificate is still there"
    );
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), "team");
    assert!(secrets.get_opt("sw-htpasswd").await.unwrap().is_none());
    let tls: Secret = get(&ctx, "team", "sw-tls").await;
    assert!(secret_text(&tls, "tls.crt").starts_with("-----BEGIN CERTIFICATE-----"));
    // Secrets the Registry does not own stay: the user's password Secret.
    let _: Secret = get(&ctx, "team", "pw").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_ports_on_external_hosts_reach_the_pull_secret_and_the_certificate() {
    let kube = setup();
    let ctx = context(&kube).await;
    let spec = "{service: {type: NodePort, externalHosts: [192.168.1.20, \"registry.example.com:443\"]}, pullSecrets: {namespaces: [team]}}";
    let out = kube.apply("np.yaml", &registry_yaml("np", spec));
    assert!(out.status.success(), "{}", out.stderr);
    reconcile_named(&ctx, "team", "np").await;
    let service: Service = get(&ctx, "team", "np").await;
    let spec = service.spec.unwrap();
    let ip = spec.cluster_ip.unwrap();
    let node_port = spec.ports.unwrap()[0].node_port.unwrap();
    let pull: Secret = get(&ctx, "team", "np-pull").await;
    let config: serde_json::Value =
        serde_json::from_str(&secret_text(&pull, ".dockerconfigjson")).unwrap();
    let mut hosts: Vec<&String> = config["auths"].as_object().unwrap().keys().collect();
    hosts.sort();
    let mut expected = [
        format!("{ip}:5000"),
        format!("192.168.1.20:{node_port}"),
        "np.team.svc.cluster.local:5000".to_owned(),
        "np.team.svc:5000".to_owned(),
        "registry.example.com:443".to_owned(),
    ];
    expected.sort();
    assert_eq!(hosts, expected.iter().collect::<Vec<_>>());
    let tls: Secret = get(&ctx, "team", "np-tls").await;
    let sans = &tls.metadata.annotations.unwrap()["dockyard.dev/sans"];
    assert!(
        sans.ends_with(&format!("registry.example.com,{ip},192.168.1.20")),
        "{sans}"
    );
    let status = get::<Registry>(&ctx, "team", "np").await.status.unwrap();
    assert_eq!(status.endpoint, Some(format!("{ip}:5000")));
}
