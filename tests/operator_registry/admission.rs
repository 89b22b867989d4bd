//! Invalid Registries: refused at admission with the CEL rule's message, reported on the
//! resource (Degraded and one Warning Event series) when only other objects reveal it, and a
//! `null` where a value has a default stored as the default, never as an object the
//! operator cannot read.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn invalid_registries_are_refused_or_reported() {
    let kube = setup();
    let ctx = context(&kube).await;
    for (spec, message) in [
        (
            "storage: {filesystem: {size: 1Gi}, s3: {bucket: b}}",
            "set only one of storage.filesystem and storage.s3",
        ),
        (
            "tls: {selfSigned: {}, disabled: true}",
            "choose one TLS mode",
        ),
        (
            "replicas: 3",
            "replicas > 1 needs storage every replica can share",
        ),
        (
            "storage: {s3: {bucket: \"\"}}",
            "storage.s3.bucket must name a bucket",
        ),
        (
            "auth: {users: [{username: \"a:b\", passwordSecretRef: {name: pw, key: k}}]}",
            "usernames may not be empty",
        ),
        (
            "service: {externalHosts: [\"https://reg.example.com/v2\"]}",
            "service.externalHosts entries are a host name or an IP address",
        ),
        (
            "storage: {s3: {bucket: \"s3://images/team\"}}",
            "storage.s3.bucket is the bucket's name alone",
        ),
        (
            "storage: {s3: {bucket: images, endpoint: \"https://minio:9000/images\"}}",
            "storage.s3.endpoint is the S3 API's base URL",
        ),
        (
            "storage: {s3: {bucket: images, endpoint: \"minio:9000\"}}",
            "storage.s3.endpoint is the S3 API's base URL",
        ),
        (
            "storage: {s3: {bucket: images, region: \"eu west 1\"}}",
            "storage.s3.region is a region name",
        ),
        (
            "storage: {s3: {bucket: images, rootDirectory: \"team/../other\"}}",
            "storage.s3.rootDirectory is a key prefix",
        ),
        (
            "storage: {s3: {bucket: images, endpoint: \"https://minio:9000\", insecureSkipVerify: true, caSecretRef: {name: ca, key: ca.crt}}}",
            "set either storage.s3.caSecretRef",
        ),
        (
            "storage: {s3: {bucket: images, endpoint: \"http://minio:9000\", insecureSkipVerify: true}}",
            "storage.s3.caSecretRef and insecureSkipVerify are for an https:// endpoint",
        ),
        (
            "storage: {s3: {bucket: images, chunkSize: 1Mi}}",
            "storage.s3.chunkSize is a size from 5Mi",
        ),
        (
            "storage: {s3: {bucket: images, chunkSize: 16MB}}",
            "storage.s3.chunkSize is a size from 5Mi",
        ),
        (
            "storage: {s3: {bucket: images, encryption: {type: KMS}}}",
            "storage.s3.encryption type KMS needs keyId",
        ),
        (
            "storage: {s3: {bucket: images, encryption: {type: AES256, keyId: k}}}",
            "storage.s3.encryption.keyId is used only with type: KMS",
        ),
        (
            "storage: {s3: {bucket: images, storageClass: standard}}",
            "storage.s3.storageClass is an S3 storage class",
        ),
        (
            "storage: {s3: {bucket: images, gc: {interval: daily}}}",
            "storage.s3.gc.interval is a Go duration of at least 1m",
        ),
        (
            "storage: {s3: {bucket: images, gc: {grace: 30s}}}",
            "storage.s3.gc.grace is a Go duration of at least 10m",
        ),
        (
            "serviceAccountName: Registry_SA",
            "serviceAccountName is the name of a ServiceAccount",
        ),
    ] {
        let yaml = format!(
            "apiVersion: dockyard.dev/v1alpha1\nkind: Registry\nmetadata: {{name: bad, namespace: team}}\nspec:\n  {spec}\n"
        );
        let out = kube.apply("bad.yaml", &yaml);
        assert!(!out.status.success(), "accepted: {spec}");
        assert!(out.stderr.contains(message), "{spec}: {}", out.stderr);
    }
    // Every S3 field, well formed, is admitted.
    let full = "apiVersion: dockyard.dev/v1alpha1\nkind: Registry\nmetadata: {name: full, namespace: team}\nspec:\n  replicas: 3\n  serviceAccountName: registry.irsa\n  storage:\n    s3: {bucket: images.team-a, region: eu-west-1, endpoint: \"https://minio.storage.svc:9000/\", forcePathStyle: true, rootDirectory: /teams/a/, credentialsSecretRef: {name: keys}, caSecretRef: {name: ca, key: ca.crt}, chunkSize: 16Mi, encryption: {type: KMS, keyId: alias/registry}, storageClass: STANDARD_IA, redirect: true, gc: {enabled: true, interval: 6h30m, grace: 90m, deleteUntagged: true, dryRun: true}}\n";
    let out = kube.apply("full.yaml", full);
    assert!(out.status.success(), "refused: {}", out.stderr);
    // What admission cannot know is reported on the resource.
    let missing = "apiVersion: dockyard.dev/v1alpha1\nkind: Registry\nmetadata: {name: lost, namespace: team}\nspec:\n  auth: {users: [{username: bob, passwordSecretRef: {name: nope, key: bob}}]}\n";
    assert!(kube.apply("lost.yaml", missing).status.success());
    reconcile_named(&ctx, "team", "lost").await;
    let degraded = condition(&ctx, "team", "lost", "Degraded").await;
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "SecretNotFound")
    );
    assert!(degraded.message.contains("\"nope\""));
    assert!(
        Api::<Deployment>::namespaced(ctx.client.clone(), "team")
            .get_opt("lost")
            .await
            .unwrap()
            .is_none()
    );
    // Reported again on the next reconcile, the Event becomes a series on one object (one
    // recorder for the operator), not a second Event.
    reconcile_named(&ctx, "team", "lost").await;
    let events = kube.kubectl(&["-n", "team", "get", "events.events.k8s.io", "-o", "json"]);
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    let reported: Vec<&serde_json::Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "SecretNotFound")
        .collect();
    assert_eq!(reported.len(), 1, "one Warning Event: {events}");
    assert_eq!(reported[0]["type"], "Warning");
    assert_eq!(reported[0]["series"]["count"], 2, "{events}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_null_size_becomes_the_default_not_an_unreadable_registry() {
    let kube = setup();
    let ctx = context(&kube).await;
    // Sent as written (kubectl would drop the null), as a GitOps tool or a client library may.
    let object = serde_json::json!({
        "apiVersion": "dockyard.dev/v1alpha1", "kind": "Registry",
        "metadata": {"name": "nul", "namespace": "team"},
        "spec": {"storage": {"filesystem": {"size": null}}}
    });
    let raw: kube::api::DynamicObject = serde_json::from_value(object).unwrap();
    let resource = kube::api::ApiResource::erase::<Registry>(&());
    Api::<kube::api::DynamicObject>::namespaced_with(ctx.client.clone(), "team", &resource)
        .create(&Default::default(), &raw)
        .await
        .expect("admitted");
    let stored = Api::<Registry>::namespaced(ctx.client.clone(), "team")
        .get("nul")
        .await
        .expect("the stored Registry fits the operator's types");
    let size = &stored.spec.storage.filesystem.unwrap().size;
    assert_eq!(size.0, "10Gi");
}
