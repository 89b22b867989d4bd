//! The middleware driven with `oneshot` over the memory driver: what a scrape shows after
//! pushes and pulls.

use std::collections::BTreeMap;

use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::content::{Content, ContentOptions};
use crate::registry::{AppState, http::UrlBase, router};
use crate::storage::memory::MemoryDriver;

#[test]
fn paths_map_to_registry2_handler_names() {
    let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    for (path, handler) in [
        ("/v2", Some("base")),
        ("/v2/", Some("base")),
        ("/v2/_catalog", Some("catalog")),
        ("/v2/a/b/tags/list", Some("tags")),
        ("/v2/a/manifests/latest", Some("manifest")),
        (&format!("/v2/a/b/c/manifests/{d}"), Some("manifest")),
        (&format!("/v2/a/blobs/{d}"), Some("blob")),
        ("/v2/a/b/blobs/uploads/", Some("blob_upload")),
        ("/v2/a/b/blobs/uploads", Some("blob_upload")),
        ("/v2/a/b/blobs/uploads/0f3c-aa", Some("blob_upload_chunk")),
        (&format!("/v2/a/referrers/{d}"), Some("referrers")),
        // A repository named like an endpoint is still a repository.
        ("/v2/blobs/uploads/manifests/x", Some("manifest")),
        ("/v2/a/uploads/x", None),
        ("/v2/a", None),
        ("/v2/a/unknown/x", None),
        ("/v2x", None),
        ("/healthz", None),
        ("/", None),
    ] {
        assert_eq!(
            Handler::for_path(path).map(Handler::name),
            handler,
            "{path}"
        );
    }
}

struct Instrumented {
    router: Router,
    registry: Registry,
}

fn app() -> Instrumented {
    let mut registry = Registry::default();
    let metrics = Arc::new(HttpMetrics::new(&mut registry));
    let content = Content::new(Arc::new(MemoryDriver::new()), ContentOptions::default());
    let app = router(AppState {
        store: Arc::new(content),
        urls: UrlBase::default(),
        auth: None,
    });
    Instrumented {
        router: instrument(app, metrics),
        registry,
    }
}

impl Instrumented {
    /// Sends a request and reads the whole response; returns its status and the Location.
    async fn send(&self, method: Method, uri: &str, body: &[u8]) -> (StatusCode, String) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "registry.test")
            .header("content-length", body.len())
            .body(Body::from(body.to_vec()))
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        resp.into_body().collect().await.unwrap();
        (status, location)
    }

    /// Every sample of the scrape, by name and sorted labels.
    fn scrape(&self) -> BTreeMap<String, f64> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        parse(&text)
    }
}

/// `name{a="1",b="2"} value` lines as `name{a="1",b="2"}` (labels sorted) -> value.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let key = match series.split_once('{') {
                Some((name, labels)) => {
                    let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                    labels.sort_unstable();
                    format!("{name}{{{}}}", labels.join(","))
                }
                None => series.to_owned(),
            };
            (key, value.parse().unwrap())
        })
        .collect()
}

fn value(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {samples:#?}"))
}

fn digest(bytes: &[u8]) -> String {
    crate::oci::Digest::of(crate::oci::Algorithm::Sha256, bytes).to_string()
}

#[tokio::test]
async fn pushes_and_pulls_are_counted_by_handler_method_and_code() {
    let app = app();
    let small = vec![7u8; 3000];
    let chunked = vec![9u8; 5000];
    let (status, _) = app
        .send(
            Method::POST,
            &format!("/v2/a/b/blobs/uploads/?digest={}", digest(&small)),
            &small,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, location) = app.send(Method::POST, "/v2/a/b/blobs/uploads/", b"").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = app.send(Method::PATCH, &location, &chunked[..2000]).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let complete = format!("{location}?digest={}", digest(&chunked));
    let (status, _) = app.send(Method::PUT, &complete, &chunked[2000..]).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app
        .send(
            Method::GET,
            &format!("/v2/a/b/blobs/{}", digest(&chunked)),
            b"",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .send(
            Method::HEAD,
            &format!("/v2/a/b/blobs/{}", digest(&small)),
            b"",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.send(Method::GET, "/v2/a/b/manifests/nope", b"").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Outside the API: not counted, as registry:2 counts only what its router matched.
    app.send(Method::GET, "/healthz", b"").await;
    app.send(Method::GET, "/v2/a/unknown/x", b"").await;

    let s = app.scrape();
    let requests = |code: &str, handler: &str, method: &str| {
        value(
            &s,
            &format!(
                "registry_http_requests_total{{code=\"{code}\",handler=\"{handler}\",method=\"{method}\"}}"
            ),
        )
    };
    assert_eq!(requests("201", "blob_upload", "post"), 1.0);
    assert_eq!(requests("202", "blob_upload", "post"), 1.0);
    assert_eq!(requests("202", "blob_upload_chunk", "patch"), 1.0);
    assert_eq!(requests("201", "blob_upload_chunk", "put"), 1.0);
    assert_eq!(requests("200", "blob", "get"), 1.0);
    assert_eq!(requests("200", "blob", "head"), 1.0);
    assert_eq!(requests("404", "manifest", "get"), 1.0);
    let total: f64 = s
        .iter()
        .filter(|(k, _)| k.starts_with("registry_http_requests_total"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, 7.0, "nothing else counted: {s:#?}");
    assert_eq!(
        value(
            &s,
            "registry_http_request_duration_seconds_count{handler=\"blob_upload\",method=\"post\"}"
        ),
        2.0
    );
    assert_eq!(
        value(
            &s,
            "registry_http_response_size_bytes_sum{handler=\"blob\"}"
        ),
        chunked.len() as f64
    );
    assert!(
        value(
            &s,
            "registry_http_request_size_bytes_sum{handler=\"blob_upload_chunk\"}"
        ) >= chunked.len() as f64
    );
    assert_eq!(
        value(&s, "dockyard_blob_bytes_total{direction=\"received\"}"),
        (small.len() + chunked.len()) as f64
    );
    assert_eq!(
        value(&s, "dockyard_blob_bytes_total{direction=\"sent\"}"),
        chunked.len() as f64
    );
    for handler in HANDLERS {
        let key = format!(
            "registry_http_in_flight_requests{{handler=\"{}\"}}",
            handler.name()
        );
        assert_eq!(value(&s, &key), 0.0, "{key}");
    }
    assert_eq!(value(&s, "dockyard_uploads_in_progress"), 0.0);
}

#[tokio::test]
async fn a_response_is_in_flight_until_its_body_is_done_with() {
    let app = app();
    let blob = vec![1u8; 100_000];
    let d = digest(&blob);
    app.send(
        Method::POST,
        &format!("/v2/a/blobs/uploads/?digest={d}"),
        &blob,
    )
    .await;
    let req = Request::get(format!("/v2/a/blobs/{d}"))
        .body(Body::empty())
        .unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let in_flight = "registry_http_in_flight_requests{handler=\"blob\"}";
    let get = "registry_http_requests_total{code=\"200\",handler=\"blob\",method=\"get\"}";
    assert_eq!(value(&app.scrape(), in_flight), 1.0);
    assert!(!app.scrape().contains_key(get), "counted once sent");
    // The client goes away before reading the blob: the request still ends.
    drop(resp);
    let s = app.scrape();
    assert_eq!(value(&s, in_flight), 0.0);
    assert_eq!(value(&s, get), 1.0);
    assert_eq!(
        value(&s, "dockyard_blob_bytes_total{direction=\"sent\"}"),
        0.0
    );
}
