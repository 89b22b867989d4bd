//! Upload API tests: sessions, chunks in and out of order, resume, digests, mounts.

use axum::http::{Method, StatusCode};

use super::support::{App, digest_of};

fn path_of(location: &str) -> String {
    location
        .strip_prefix("http://registry.test")
        .unwrap_or(location)
        .to_owned()
}

#[tokio::test]
async fn chunked_upload_in_order_resumable_and_verified() {
    let app = App::new(true);
    let start = app
        .send(Method::POST, "/v2/c/blobs/uploads/", &[], b"")
        .await;
    assert_eq!(start.status, StatusCode::ACCEPTED);
    assert_eq!(start.header("range"), "0-0");
    let id = start.header("docker-upload-uuid");
    assert!(!id.is_empty());
    let loc = path_of(&start.header("location"));
    assert!(loc.ends_with(&id), "{loc}");
    assert!(
        start
            .header("location")
            .starts_with("http://registry.test/v2/c/blobs/uploads/")
    );

    let r = app
        .send(
            Method::PATCH,
            &loc,
            &[("content-range", "0-4"), ("content-length", "5")],
            b"hello",
        )
        .await;
    assert_eq!(
        (r.status, r.header("range")),
        (StatusCode::ACCEPTED, "0-4".to_owned())
    );
    // Repeating a chunk is out of order: 416 and the range the server has.
    let r = app
        .send(
            Method::PATCH,
            &loc,
            &[("content-range", "0-4"), ("content-length", "5")],
            b"hello",
        )
        .await;
    assert_eq!(
        (r.status, r.header("range")),
        (StatusCode::RANGE_NOT_SATISFIABLE, "0-4".to_owned())
    );
    // A client resumes from the status endpoint.
    let r = app.get(&loc).await;
    assert_eq!(
        (r.status, r.header("range")),
        (StatusCode::NO_CONTENT, "0-4".to_owned())
    );
    let r = app
        .send(
            Method::PATCH,
            &loc,
            &[("content-range", "5-10"), ("content-length", "3")],
            b" wo",
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "SIZE_INVALID".into())
    );
    // Streamed chunk without Content-Range.
    let r = app.send(Method::PATCH, &loc, &[], b" world").await;
    assert_eq!(r.header("range"), "0-10");

    let d = digest_of(b"hello world");
    let r = app
        .send(Method::PUT, &format!("{loc}?digest={d}"), &[], b"")
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("docker-content-digest"), d);
    assert_eq!(
        app.get(&format!("/v2/c/blobs/{d}")).await.body,
        b"hello world"
    );
    // The session is gone once completed.
    assert_eq!(app.get(&loc).await.code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn digest_mismatch_stores_nothing() {
    let app = App::new(true);
    let start = app
        .send(Method::POST, "/v2/m/blobs/uploads/", &[], b"")
        .await;
    let loc = path_of(&start.header("location"));
    let claimed = digest_of(b"what the client claims");
    let r = app
        .send(
            Method::PUT,
            &format!("{loc}?digest={claimed}"),
            &[],
            b"actual bytes",
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into())
    );
    assert_eq!(
        app.send(Method::HEAD, &format!("/v2/m/blobs/{claimed}"), &[], b"")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let actual = digest_of(b"actual bytes");
    assert_eq!(
        app.send(Method::HEAD, &format!("/v2/m/blobs/{actual}"), &[], b"")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Monolithic POST with a wrong digest fails the same way.
    let r = app
        .send(
            Method::POST,
            &format!("/v2/m/blobs/uploads/?digest={claimed}"),
            &[],
            b"x",
        )
        .await;
    assert_eq!(r.code(), "DIGEST_INVALID");
    // Missing or malformed digest on completion.
    let start = app
        .send(Method::POST, "/v2/m/blobs/uploads/", &[], b"")
        .await;
    let loc = path_of(&start.header("location"));
    assert_eq!(
        app.send(Method::PUT, &loc, &[], b"x").await.code(),
        "DIGEST_INVALID"
    );
    assert_eq!(
        app.send(Method::PUT, &format!("{loc}?digest=sha256:12"), &[], b"")
            .await
            .code(),
        "DIGEST_INVALID"
    );
}

#[tokio::test]
async fn sha512_blobs() {
    let app = App::new(true);
    let d = crate::oci::Digest::of(crate::oci::Algorithm::Sha512, b"five twelve").to_string();
    let r = app
        .send(
            Method::POST,
            &format!("/v2/s/blobs/uploads/?digest={d}"),
            &[],
            b"five twelve",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = app.get(&format!("/v2/s/blobs/{d}")).await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (StatusCode::OK, &b"five twelve"[..])
    );
    assert_eq!(r.header("docker-content-digest"), d);
}

#[tokio::test]
async fn cross_repository_mount_and_fallback() {
    let app = App::new(true);
    let d = app.push_blob("from/repo", b"shared layer").await;
    let r = app
        .send(
            Method::POST,
            &format!("/v2/to/repo/blobs/uploads/?mount={d}&from=from/repo"),
            &[],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(
        r.header("location")
            .ends_with(&format!("/v2/to/repo/blobs/{d}"))
    );
    assert_eq!(
        app.get(&format!("/v2/to/repo/blobs/{d}")).await.body,
        b"shared layer"
    );
    // Not in the source repository: a normal upload session instead.
    let missing = digest_of(b"nowhere");
    let r = app
        .send(
            Method::POST,
            &format!("/v2/to/repo/blobs/uploads/?mount={missing}&from=from/repo"),
            &[],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(!r.header("docker-upload-uuid").is_empty());
    // A source the caller names but that does not hold the blob does not leak it.
    let r = app
        .send(
            Method::POST,
            &format!("/v2/to/other/blobs/uploads/?mount={d}&from=empty/repo"),
            &[],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn cancel_and_unknown_sessions() {
    let app = App::new(true);
    let start = app
        .send(Method::POST, "/v2/x/blobs/uploads/", &[], b"")
        .await;
    let loc = path_of(&start.header("location"));
    app.send(Method::PATCH, &loc, &[], b"partial").await;
    assert_eq!(
        app.send(Method::DELETE, &loc, &[], b"").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get(&loc).await.code(), "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(
        app.send(Method::PATCH, &loc, &[], b"more").await.code(),
        "BLOB_UPLOAD_UNKNOWN"
    );
    let r = app
        .send(
            Method::PATCH,
            "/v2/x/blobs/uploads/not-a-session",
            &[],
            b"x",
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN".into())
    );
    // A session of one repository is unknown under another.
    let start = app
        .send(Method::POST, "/v2/x/blobs/uploads/", &[], b"")
        .await;
    let id = start.header("docker-upload-uuid");
    assert_eq!(
        app.get(&format!("/v2/y/blobs/uploads/{id}")).await.code(),
        "BLOB_UPLOAD_UNKNOWN"
    );
}

#[tokio::test]
async fn location_honours_forwarded_headers() {
    let app = App::new(true);
    let r = app
        .send(
            Method::POST,
            "/v2/f/blobs/uploads/",
            &[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "reg.example.com"),
            ],
            b"",
        )
        .await;
    assert!(
        r.header("location")
            .starts_with("https://reg.example.com/v2/f/blobs/uploads/"),
        "{}",
        r.header("location")
    );
}

#[tokio::test]
async fn http2_authority_gives_absolute_locations() {
    use axum::body::Body;
    let app = App::new(true);
    // An HTTP/2 request: the authority is in the URI, there is no Host header.
    let req = axum::http::Request::builder()
        .method(Method::POST)
        .uri("http://h2.example:5000/v2/h/blobs/uploads/")
        .version(axum::http::Version::HTTP_2)
        .body(Body::empty())
        .unwrap();
    let r = app.send_request(req).await;
    assert!(
        r.header("location")
            .starts_with("http://h2.example:5000/v2/h/blobs/uploads/"),
        "{}",
        r.header("location")
    );
}
