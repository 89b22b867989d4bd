//! Listing API tests: referrers with the artifactType filter, tags and catalog pagination.

use axum::http::{Method, StatusCode};

use super::support::{self, App, digest_of};

#[tokio::test]
async fn referrers_with_artifact_type_filter() {
    let app = App::new(true);
    let (manifest, _, _) = app.push_image("ref", b"l").await;
    app.send(
        Method::PUT,
        "/v2/ref/manifests/v1",
        &[("content-type", support::OCI_MANIFEST)],
        manifest.as_bytes(),
    )
    .await;
    let subject = digest_of(manifest.as_bytes());
    let empty = app.push_blob("ref", b"{}").await;
    let artifact = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"application/vnd.example.sbom","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"layers":[],"subject":{{"mediaType":"{}","digest":"{subject}","size":{}}},"annotations":{{"k":"v"}}}}"#,
        support::OCI_MANIFEST,
        support::OCI_MANIFEST,
        manifest.len()
    );
    let artifact_digest = digest_of(artifact.as_bytes());
    let r = app
        .send(
            Method::PUT,
            &format!("/v2/ref/manifests/{artifact_digest}"),
            &[("content-type", support::OCI_MANIFEST)],
            artifact.as_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("oci-subject"), subject);

    let r = app.get(&format!("/v2/ref/referrers/{subject}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), support::OCI_INDEX);
    let list = r.json();
    assert_eq!(list["manifests"][0]["digest"], artifact_digest);
    assert_eq!(
        list["manifests"][0]["artifactType"],
        "application/vnd.example.sbom"
    );
    assert_eq!(list["manifests"][0]["annotations"]["k"], "v");
    assert_eq!(list["manifests"][0]["size"], artifact.len());

    let r = app
        .get(&format!(
            "/v2/ref/referrers/{subject}?artifactType=application/vnd.example.sbom"
        ))
        .await;
    assert_eq!(r.header("oci-filters-applied"), "artifactType");
    assert_eq!(r.json()["manifests"].as_array().unwrap().len(), 1);
    let r = app
        .get(&format!(
            "/v2/ref/referrers/{subject}?artifactType=application/other"
        ))
        .await;
    assert_eq!(r.json()["manifests"], serde_json::json!([]));
    let r = app
        .get(&format!(
            "/v2/ref/referrers/{}",
            digest_of(b"no such subject")
        ))
        .await;
    assert_eq!(
        (r.status, r.json()["manifests"].clone()),
        (StatusCode::OK, serde_json::json!([]))
    );

    // Deleting the referrer removes it from the list.
    let r = app
        .send(
            Method::DELETE,
            &format!("/v2/ref/manifests/{artifact_digest}"),
            &[],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        app.get(&format!("/v2/ref/referrers/{subject}"))
            .await
            .json()["manifests"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn tags_and_catalog_paginate_with_link_headers() {
    let app = App::new(true);
    let (manifest, _, _) = app.push_image("p/q", b"l").await;
    for tag in ["c", "a", "b", "d"] {
        let r = app
            .send(
                Method::PUT,
                &format!("/v2/p/q/manifests/{tag}"),
                &[("content-type", support::OCI_MANIFEST)],
                manifest.as_bytes(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let r = app.get("/v2/p/q/tags/list?n=2").await;
    assert_eq!(r.json()["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(
        r.header("link"),
        "</v2/p/q/tags/list?n=2&last=b>; rel=\"next\""
    );
    let r = app.get("/v2/p/q/tags/list?n=2&last=b").await;
    assert_eq!(r.json()["tags"], serde_json::json!(["c", "d"]));
    assert_eq!(r.header("link"), "");
    assert_eq!(
        app.get("/v2/p/q/tags/list?n=x").await.code(),
        "PAGINATION_NUMBER_INVALID"
    );
    assert_eq!(app.get("/v2/nope/tags/list").await.code(), "NAME_UNKNOWN");

    app.push_image("a/b/c/d/e/f/g/h", b"l").await;
    let (m2, _, _) = app.push_image("a/b/c/d/e/f/g/h", b"l").await;
    app.send(
        Method::PUT,
        "/v2/a/b/c/d/e/f/g/h/manifests/t",
        &[("content-type", support::OCI_MANIFEST)],
        m2.as_bytes(),
    )
    .await;
    let r = app.get("/v2/_catalog").await;
    assert_eq!(
        r.json()["repositories"],
        serde_json::json!(["a/b/c/d/e/f/g/h", "p/q"])
    );
    let r = app.get("/v2/_catalog?n=1").await;
    assert_eq!(
        r.json()["repositories"],
        serde_json::json!(["a/b/c/d/e/f/g/h"])
    );
    assert!(r.header("link").contains("last=a/b/c/d/e/f/g/h"));
}

#[tokio::test]
async fn n_zero_is_an_empty_last_page() {
    let app = App::new(true);
    app.push_image("z", b"l").await;
    let (manifest, _, _) = app.push_image("z", b"l").await;
    app.send(
        Method::PUT,
        "/v2/z/manifests/t",
        &[("content-type", support::OCI_MANIFEST)],
        manifest.as_bytes(),
    )
    .await;
    for uri in [
        "/v2/_catalog?n=0",
        "/v2/z/tags/list?n=0",
        "/v2/z/tags/list?n=0&last=a",
    ] {
        let r = app.get(uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert_eq!(
            r.header("link"),
            "",
            "{uri}: a Link would loop back to itself"
        );
    }
    assert_eq!(
        app.get("/v2/_catalog?n=0").await.json()["repositories"],
        serde_json::json!([])
    );
    assert_eq!(
        app.get("/v2/z/tags/list?n=0").await.json()["tags"],
        serde_json::json!([])
    );
}
