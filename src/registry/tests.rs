//! API tests: the router driven with `oneshot` over the memory driver, asserting the
//! statuses, headers, OCI error codes and bytes a client sees.

#[path = "tests/auth.rs"]
mod auth;
#[path = "tests/hardening.rs"]
mod hardening;
#[path = "tests/listing.rs"]
mod listing;
#[path = "tests/support.rs"]
mod support;
#[path = "tests/uploads.rs"]
mod uploads;

use axum::http::{Method, StatusCode};
use support::{App, digest_of};

#[tokio::test]
async fn base_endpoint_and_unknown_routes() {
    let app = App::new(true);
    let r = app.get("/v2/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
    let r = app.send(Method::POST, "/v2/", &[], b"").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED".into())
    );
    let r = app.get("/v2/a/unknown/x").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "NOT_FOUND".into())
    );
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn hostile_names_and_digests_are_rejected_with_oci_codes() {
    let app = App::new(true);
    let long = format!("/v2/{}/tags/list", "a".repeat(256));
    for path in [
        "/v2/UPPER/tags/list",
        "/v2/a/../b/tags/list",
        "/v2/a//b/tags/list",
        "/v2/-a/tags/list",
        long.as_str(),
    ] {
        let r = app.get(path).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "NAME_INVALID".into()),
            "{path}"
        );
    }
    for d in [
        "sha256:abc",
        "sha256:ZZZZ",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "nocolon",
    ] {
        let r = app.get(&format!("/v2/a/blobs/{d}")).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into()),
            "{d}"
        );
    }
    let r = app.get("/v2/a/manifests/bad:tag").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // An invalid tag names nothing: reads are 404, a push is refused as invalid.
    let r = app.get("/v2/a/manifests/.bad").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
    );
    let r = app
        .send(Method::PUT, "/v2/a/manifests/.bad", &[], b"{}")
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "TAG_INVALID".into())
    );
}

#[tokio::test]
async fn blob_reads_with_ranges_and_scoping() {
    let app = App::new(true);
    let d = app.push_blob("r", b"0123456789").await;
    let r = app.get(&format!("/v2/r/blobs/{d}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, b"0123456789");
    assert_eq!(r.header("docker-content-digest"), d);
    assert_eq!(r.header("content-length"), "10");
    let r = app
        .send(Method::HEAD, &format!("/v2/r/blobs/{d}"), &[], b"")
        .await;
    assert_eq!(
        (r.status, r.header("content-length").as_str(), r.body.len()),
        (StatusCode::OK, "10", 0)
    );
    let r = app
        .send(
            Method::GET,
            &format!("/v2/r/blobs/{d}"),
            &[("range", "bytes=2-4")],
            b"",
        )
        .await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &b"234"[..])
    );
    assert_eq!(r.header("content-range"), "bytes 2-4/10");
    let r = app
        .send(
            Method::GET,
            &format!("/v2/r/blobs/{d}"),
            &[("range", "bytes=10-")],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("content-range"), "bytes */10");
    // A blob is only visible through a repository it is linked into.
    let r = app.get(&format!("/v2/other/blobs/{d}")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN".into())
    );
    // containerd's ?ns= is accepted on every endpoint.
    assert_eq!(
        app.get(&format!("/v2/r/blobs/{d}?ns=docker.io"))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn manifests_push_pull_and_validation() {
    let app = App::new(true);
    let (manifest, config, layer) = app.push_image("img", b"layer-bytes").await;
    let put = app
        .send(
            Method::PUT,
            "/v2/img/manifests/v1",
            &[("content-type", support::OCI_MANIFEST)],
            manifest.as_bytes(),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED);
    let digest = digest_of(manifest.as_bytes());
    assert_eq!(put.header("docker-content-digest"), digest);
    assert!(
        put.header("location")
            .ends_with(&format!("/v2/img/manifests/{digest}"))
    );
    for reference in ["v1", digest.as_str()] {
        let r = app.get(&format!("/v2/img/manifests/{reference}")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, manifest.as_bytes());
        assert_eq!(r.header("content-type"), support::OCI_MANIFEST);
        assert_eq!(r.header("docker-content-digest"), digest);
    }
    let head = app
        .send(Method::HEAD, "/v2/img/manifests/v1", &[], b"")
        .await;
    assert_eq!(
        (head.status, head.header("content-length")),
        (StatusCode::OK, manifest.len().to_string())
    );

    // Bad input loses nothing and says what is wrong.
    let missing = manifest.replace(&layer, &digest_of(b"never pushed"));
    let r = app
        .send(
            Method::PUT,
            "/v2/img/manifests/v2",
            &[("content-type", support::OCI_MANIFEST)],
            missing.as_bytes(),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN".into())
    );
    let r = app
        .send(
            Method::PUT,
            "/v2/img/manifests/v2",
            &[("content-type", support::OCI_MANIFEST)],
            b"{nope",
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "MANIFEST_INVALID".into())
    );
    let wrong = format!("/v2/img/manifests/{}", digest_of(b"other"));
    let r = app
        .send(
            Method::PUT,
            &wrong,
            &[("content-type", support::OCI_MANIFEST)],
            manifest.as_bytes(),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into())
    );
    let huge = vec![b' '; (4 << 20) + 1];
    let r = app
        .send(
            Method::PUT,
            "/v2/img/manifests/v3",
            &[("content-type", support::OCI_MANIFEST)],
            &huge,
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        app.get("/v2/img/manifests/v2").await.code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        app.get("/v2/img/tags/list").await.json()["tags"],
        serde_json::json!(["v1"])
    );
    let _ = config;
}

#[tokio::test]
async fn index_requires_its_manifests() {
    let app = App::new(true);
    let (manifest, _, _) = app.push_image("multi", b"l").await;
    let child = digest_of(manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{child}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
        support::OCI_INDEX,
        support::OCI_MANIFEST,
        manifest.len()
    );
    let r = app
        .send(
            Method::PUT,
            "/v2/multi/manifests/all",
            &[("content-type", support::OCI_INDEX)],
            index.as_bytes(),
        )
        .await;
    assert_eq!(r.code(), "MANIFEST_BLOB_UNKNOWN");
    app.send(
        Method::PUT,
        &format!("/v2/multi/manifests/{child}"),
        &[("content-type", support::OCI_MANIFEST)],
        manifest.as_bytes(),
    )
    .await;
    let r = app
        .send(
            Method::PUT,
            "/v2/multi/manifests/all",
            &[("content-type", support::OCI_INDEX)],
            index.as_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        app.get("/v2/multi/manifests/all")
            .await
            .header("content-type"),
        support::OCI_INDEX
    );
}

#[tokio::test]
async fn deletes_follow_configuration() {
    let off = App::new(false);
    let (manifest, _, layer) = off.push_image("d", b"l").await;
    off.send(
        Method::PUT,
        "/v2/d/manifests/v1",
        &[("content-type", support::OCI_MANIFEST)],
        manifest.as_bytes(),
    )
    .await;
    let r = off
        .send(Method::DELETE, "/v2/d/manifests/v1", &[], b"")
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED".into())
    );
    assert_eq!(off.get("/v2/d/manifests/v1").await.status, StatusCode::OK);

    let on = App::new(true);
    let (manifest, _, layer2) = on.push_image("d", b"l").await;
    assert_eq!(layer, layer2);
    let digest = digest_of(manifest.as_bytes());
    for tag in ["v1", "v2"] {
        on.send(
            Method::PUT,
            &format!("/v2/d/manifests/{tag}"),
            &[("content-type", support::OCI_MANIFEST)],
            manifest.as_bytes(),
        )
        .await;
    }
    // Deleting a tag leaves the manifest and the other tag.
    assert_eq!(
        on.send(Method::DELETE, "/v2/d/manifests/v1", &[], b"")
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        on.get("/v2/d/manifests/v1").await.code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(on.get("/v2/d/manifests/v2").await.status, StatusCode::OK);
    // Deleting by digest removes every tag on it.
    assert_eq!(
        on.send(
            Method::DELETE,
            &format!("/v2/d/manifests/{digest}"),
            &[],
            b""
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        on.get("/v2/d/manifests/v2").await.code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        on.get(&format!("/v2/d/manifests/{digest}")).await.code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        on.get("/v2/d/tags/list").await.json()["tags"],
        serde_json::json!([])
    );
    assert_eq!(
        on.send(
            Method::DELETE,
            &format!("/v2/d/manifests/{digest}"),
            &[],
            b""
        )
        .await
        .code(),
        "MANIFEST_UNKNOWN"
    );
    // Blob delete unlinks it from the repository.
    assert_eq!(
        on.send(Method::DELETE, &format!("/v2/d/blobs/{layer}"), &[], b"")
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        on.get(&format!("/v2/d/blobs/{layer}")).await.code(),
        "BLOB_UNKNOWN"
    );
}

#[tokio::test]
async fn read_only_mode_refuses_writes_and_serves_reads() {
    let options = crate::content::ContentOptions {
        read_only: true,
        delete_enabled: true,
        ..Default::default()
    };
    let app = App::with_options(options);
    for (method, path) in [
        (Method::POST, "/v2/ro/blobs/uploads/"),
        (Method::PUT, "/v2/ro/manifests/v1"),
        (Method::DELETE, "/v2/ro/manifests/v1"),
    ] {
        let r = app.send(method.clone(), path, &[], b"{}").await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED".into()),
            "{method} {path}"
        );
        assert!(
            r.json()["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("read-only")
        );
    }
    assert_eq!(app.get("/v2/").await.status, StatusCode::OK);
    assert_eq!(
        app.get("/v2/ro/manifests/v1").await.code(),
        "MANIFEST_UNKNOWN"
    );
}

#[tokio::test]
async fn conditional_requests_get_304() {
    let app = App::new(true);
    let d = app.push_blob("c", b"cached").await;
    let etag = format!("\"{d}\"");
    let r = app
        .send(
            Method::GET,
            &format!("/v2/c/blobs/{d}"),
            &[("if-none-match", &etag)],
            b"",
        )
        .await;
    assert_eq!((r.status, r.body.len()), (StatusCode::NOT_MODIFIED, 0));
    assert_eq!(r.header("etag"), etag);
    let (manifest, _, _) = app.push_image("c", b"l").await;
    app.send(
        Method::PUT,
        "/v2/c/manifests/v1",
        &[("content-type", support::OCI_MANIFEST)],
        manifest.as_bytes(),
    )
    .await;
    let etag = app.get("/v2/c/manifests/v1").await.header("etag");
    let r = app
        .send(
            Method::GET,
            "/v2/c/manifests/v1",
            &[("if-none-match", &etag)],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let r = app
        .send(
            Method::GET,
            "/v2/c/manifests/v1",
            &[("if-none-match", "\"sha256:other\"")],
            b"",
        )
        .await;
    assert_eq!((r.status, r.body.len()), (StatusCode::OK, manifest.len()));
}

/// The kubelet probes `/healthz` every few seconds: those requests stay out of the access
/// log at info (debug shows them), while every other request is logged.
#[tokio::test]
async fn health_checks_stay_out_of_the_info_access_log() {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let log = |level: &str| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(level))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    };
    let app = App::new(true);
    let (info, guard) = log("info");
    assert_eq!(
        app.get(crate::registry::HEALTH_PATH).await.status,
        StatusCode::OK
    );
    assert_eq!(app.get("/v2/").await.status, StatusCode::OK);
    drop(guard);
    let text = String::from_utf8(info.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("uri=/v2/"), "{text}");
    assert!(!text.contains("/healthz"), "{text}");
    let (debug, guard) = log("debug");
    app.get(crate::registry::HEALTH_PATH).await;
    drop(guard);
    let text = String::from_utf8(debug.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("uri=/healthz"), "{text}");
}
