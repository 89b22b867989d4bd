//! The repository name index behind `/v2/_catalog` (and the UI's and `docker search`'s
//! listings), with real processes sharing one storage directory: two Dockyard replicas
//! learn of each other's repositories within `catalog.refresh`, and a repository that
//! distribution 2.8.2 writes into the same directory shows within `catalog.rescan`.

use dockyard_testkit as common;

use std::time::{Duration, Instant};

use common::http::request;
use common::registry::get_json;
use common::server::{Server, Target};
use serde_json::{Value, json};
use tempfile::TempDir;

/// An image index with no children: a manifest that needs no blobs.
fn push_empty_index(server: &Server, name: &str) {
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"annotations":{{"name":"{name}"}}}}"#
    );
    let resp = request(
        &server.addr,
        "PUT",
        &format!("/v2/{name}/manifests/v1"),
        &[("Content-Type", "application/vnd.oci.image.index.v1+json")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(resp.status, 201, "{}", resp.text());
}

fn catalog(server: &Server) -> Value {
    get_json(server, "/v2/_catalog")["repositories"].clone()
}

/// Polls the catalog until it equals `want`; returns how long that took.
fn catalog_becomes(server: &Server, want: &Value, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let got = catalog(server);
        if &got == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "after {within:?} the catalog is {got}, not {want}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn dockyard(data: &TempDir, rescan: &str) -> Server {
    Server::builder()
        .data_dir(data.path())
        .env("REGISTRY_CATALOG_REFRESH", "1s")
        .env("REGISTRY_CATALOG_RESCAN", rescan)
        .start()
}

#[test]
fn replicas_see_each_others_repositories_within_the_refresh_interval() {
    let data = TempDir::new().unwrap();
    let a = dockyard(&data, "1h");
    let b = dockyard(&data, "1h");
    push_empty_index(&a, "team/app");
    push_empty_index(&a, "deep/a/b/c/d");
    let want = json!(["deep/a/b/c/d", "team/app"]);
    assert_eq!(catalog(&a), want, "the pushing replica lists them at once");
    let lag = catalog_becomes(&b, &want, Duration::from_secs(5));
    eprintln!("the other replica listed them after {lag:?}");
    push_empty_index(&b, "from/b");
    catalog_becomes(
        &a,
        &json!(["deep/a/b/c/d", "from/b", "team/app"]),
        Duration::from_secs(5),
    );
    // Pages are cut from the index with the Link header as before.
    let (status, headers, body) =
        common::http::http_get(&a.addr, "/v2/_catalog?n=2&last=deep/a/b/c/d");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["repositories"],
        json!(["from/b", "team/app"])
    );
    assert!(!headers.iter().any(|(k, _)| k == "link"), "last page");
}

#[test]
fn repositories_written_by_distribution_show_after_a_rescan_and_at_restart() {
    let data = TempDir::new().unwrap();
    let mut ours = dockyard(&data, "3s");
    push_empty_index(&ours, "ours/app");
    let mut theirs = Server::builder()
        .target(Target::Distribution)
        .data_dir(data.path())
        .start();
    push_empty_index(&theirs, "theirs/app");
    let lag = catalog_becomes(
        &ours,
        &json!(["ours/app", "theirs/app"]),
        Duration::from_secs(10),
    );
    eprintln!("distribution's repository was listed after {lag:?}");
    theirs.stop();

    // A restart loads the index from the markers and lists the same at once.
    ours.stop();
    let ours = dockyard(&data, "1h");
    assert_eq!(catalog(&ours), json!(["ours/app", "theirs/app"]));
    assert!(
        data.path().join("dockyard/names/theirs!app").is_file(),
        "the rescan wrote a marker for the other replicas"
    );
}
