//! Edge cases a hostile or careless client finds: `Content-Range` that disagrees with the
//! body, manifests without a `mediaType` field, and OCI `?tag=` on a push by digest.

use axum::http::{Method, StatusCode};

use super::support::{self, App, digest_of};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

#[tokio::test]
async fn a_chunk_that_disagrees_with_its_content_range_gets_416_and_changes_nothing() {
    let app = App::new(false);
    let r = app
        .send(Method::POST, "/v2/r/blobs/uploads/", &[], b"")
        .await;
    let location = r.header("location");
    let first = app
        .send(
            Method::PATCH,
            &location,
            &[("content-range", "0-2")],
            b"abc",
        )
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let location = first.header("location");
    // Content-Range 3-7 promises 5 bytes; a chunked body of 10 arrives.
    let r = app
        .send(
            Method::PATCH,
            &location,
            &[("content-range", "3-7")],
            b"0123456789",
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.code(), "BLOB_UPLOAD_INVALID");
    assert_eq!(r.header("range"), "0-2");
    let status = app.get(&location).await;
    assert_eq!(status.header("range"), "0-2", "the session keeps its size");
    let r = app
        .send(Method::PATCH, &location, &[("content-range", "3-4")], b"de")
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let digest = digest_of(b"abcde");
    let r = app
        .send(
            Method::PUT,
            &format!("{}?digest={digest}", r.header("location")),
            &[],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        app.get(&format!("/v2/r/blobs/{digest}")).await.body,
        b"abcde"
    );
}

#[tokio::test]
async fn manifests_without_a_media_type_field_are_served_as_pushed() {
    let app = App::new(false);
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let c = app.push_blob("d", config).await;
    let l = app.push_blob("d", b"layer").await;
    // A Docker schema 2 manifest that relies on its Content-Type alone.
    let manifest = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{c}","size":{}}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{l}","size":5}}]}}"#,
        config.len()
    );
    let r = app
        .send(
            Method::PUT,
            "/v2/d/manifests/v1",
            &[("content-type", DOCKER_MANIFEST)],
            manifest.as_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let digest = digest_of(manifest.as_bytes());
    let list = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{DOCKER_MANIFEST}","digest":"{digest}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
        manifest.len()
    );
    let r = app
        .send(
            Method::PUT,
            "/v2/d/manifests/list",
            &[("content-type", DOCKER_LIST)],
            list.as_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Twice each: the second read comes from the manifest cache.
    for _ in 0..2 {
        for (reference, want) in [
            ("v1", DOCKER_MANIFEST),
            (digest.as_str(), DOCKER_MANIFEST),
            ("list", DOCKER_LIST),
        ] {
            for method in [Method::GET, Method::HEAD] {
                let r = app
                    .send(
                        method.clone(),
                        &format!("/v2/d/manifests/{reference}"),
                        &[],
                        b"",
                    )
                    .await;
                assert_eq!(r.status, StatusCode::OK);
                assert_eq!(r.header("content-type"), want, "{method} {reference}");
            }
        }
    }
    // An OCI manifest without the field (as helm pushes) is still served as OCI.
    let (oci, _, _) = app.push_image("d", b"layer").await;
    let bare = oci.replacen(
        &format!(r#""mediaType":"{}","#, support::OCI_MANIFEST),
        "",
        1,
    );
    let r = app
        .send(
            Method::PUT,
            "/v2/d/manifests/helm",
            &[("content-type", support::OCI_MANIFEST)],
            bare.as_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = app.get("/v2/d/manifests/helm").await;
    assert_eq!(r.header("content-type"), support::OCI_MANIFEST);
}

#[tokio::test]
async fn a_push_by_digest_with_tag_parameters_sets_every_tag() {
    let app = App::new(false);
    let (manifest, _, _) = app.push_image("t/u", b"l").await;
    let sha256 = digest_of(manifest.as_bytes());
    let r = app
        .send(
            Method::PUT,
            &format!("/v2/t/u/manifests/{sha256}?tag=v1&tag=latest&tag=v1"),
            &[("content-type", support::OCI_MANIFEST)],
            manifest.as_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let tags: Vec<_> = r
        .headers
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(tags, ["v1", "latest"]);
    assert_eq!(r.header("docker-content-digest"), sha256);
    for tag in ["v1", "latest"] {
        let got = app.get(&format!("/v2/t/u/manifests/{tag}")).await;
        assert_eq!(got.status, StatusCode::OK, "{tag}");
        assert_eq!(got.body, manifest.as_bytes());
    }
    // sha512 works the same way.
    let sha512 = crate::oci::Digest::of(crate::oci::Algorithm::Sha512, manifest.as_bytes());
    let r = app
        .send(
            Method::PUT,
            &format!("/v2/t/u/manifests/{sha512}?tag=v512"),
            &[("content-type", support::OCI_MANIFEST)],
            manifest.as_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("oci-tag"), "v512");
    let got = app.get("/v2/t/u/manifests/v512").await;
    assert_eq!(got.header("docker-content-digest"), sha512.to_string());
    assert_eq!(
        app.get("/v2/t/u/tags/list").await.json()["tags"],
        serde_json::json!(["latest", "v1", "v512"])
    );
    // One bad tag refuses the push and stores nothing.
    let r = app
        .send(
            Method::PUT,
            &format!("/v2/t/u/manifests/{sha256}?tag=ok&tag=-bad"),
            &[("content-type", support::OCI_MANIFEST)],
            manifest.as_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "TAG_INVALID");
    assert_eq!(
        app.get("/v2/t/u/manifests/ok").await.status,
        StatusCode::NOT_FOUND
    );
    // A plain push answers without OCI-Tag.
    let r = app
        .send(
            Method::PUT,
            &format!("/v2/t/u/manifests/{sha256}"),
            &[("content-type", support::OCI_MANIFEST)],
            manifest.as_bytes(),
        )
        .await;
    assert_eq!(r.header("oci-tag"), "");
}
