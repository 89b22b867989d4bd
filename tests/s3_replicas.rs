//! Two `dockyard serve` replicas on one MinIO bucket (a real S3 engine, built by
//! `tests/setup.sh` from `tools/minio`), as a scaled-out registry runs: a client may reach
//! either replica on every request. The OCI conformance suites pass through a round-robin
//! balancer that alternates requests between them; an image pushed to one pulls
//! byte-identical from the other (on one drive and on a 4-drive erasure set); a tag moved on
//! one is read at once on the other; and distribution 2.8.2 on the same bucket and root
//! directory serves what Dockyard pushed and the other way round. `uploads` moves a chunked
//! upload between replicas chunk by chunk, and kills a replica in the middle of one.
//!
//! The replicas are the target chosen by `DOCKYARD_TEST_TARGET` (two distribution 2.8.2
//! replicas with `distribution`, to check the tests themselves; the few checks where
//! distribution 2.8.2 falls short say so and are left out for it). Without a `minio` binary
//! these tests print why and pass, unless `CI` is set: then they fail.

use dockyard_testkit as common;
#[path = "s3_replicas/uploads.rs"]
mod uploads;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use common::balancer::RoundRobin;
use common::conformance::{find_runner, main_branch_env, run_suite, workflow_env};
use common::http;
use common::minio::Minio;
use common::oci::{self, ImageInfo};
use common::registry::{fetch_manifest, get_json, push_layout, skopeo_copy};
use common::upload::{assert_blob, push_blob, upload_id};
use common::{Server, Target};
use serde_json::json;
use tempfile::TempDir;

/// The replicas' `rootdirectory` in the bucket.
const ROOT: &str = "/dockyard";
/// Where distribution's layout starts in the bucket.
const PREFIX: &str = "dockyard/docker/registry/v2/";
const MIB: usize = 1 << 20;

/// A fresh bucket `bucket` and two replicas of the target registry on it, deletes enabled.
fn replicas(minio: &Minio, bucket: &str) -> (Server, Server) {
    replicas_with(minio, bucket, &[])
}

/// [`replicas`] with more settings for both.
fn replicas_with(minio: &Minio, bucket: &str, extra: &[(&str, &str)]) -> (Server, Server) {
    minio.create_bucket(bucket);
    let start = || {
        Server::builder()
            .envs(minio.registry_env(bucket, Some(ROOT)))
            .envs(extra.iter().copied())
            .delete_enabled(true)
            .start()
    };
    (start(), start())
}

fn figure(test: &str, started: Instant) {
    eprintln!("figure: {test} took {:.1?}", started.elapsed());
}

/// Keys of `bucket` under the layout's `rest` (`blobs/`, `repositories/<name>/_uploads/`).
fn keys_under(minio: &Minio, bucket: &str, rest: &str) -> Vec<String> {
    minio.list_keys(bucket, &format!("{PREFIX}{rest}"))
}

/// Asserts no upload session and no multipart upload is left in `bucket`.
fn assert_no_sessions_left(minio: &Minio, bucket: &str) {
    let sessions: Vec<String> = minio
        .list_keys(bucket, "")
        .into_iter()
        .filter(|k| k.contains("/_uploads/"))
        .collect();
    assert!(
        sessions.is_empty(),
        "finished sessions left keys: {sessions:#?}"
    );
    let multipart = minio.multipart_uploads(bucket, "");
    assert!(
        multipart.is_empty(),
        "multipart uploads left unfinished: {multipart:#?}"
    );
}

// --- The conformance suite through a round-robin balancer -----------------------------------

/// What the balancer saw: requests per replica, and upload sessions whose requests (those
/// naming the session: PATCH, PUT, GET, DELETE) went to more than one replica.
fn assert_both_replicas_served(balancer: &RoundRobin) {
    let counts = balancer.counts();
    let mut sessions: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for request in balancer.forwarded() {
        if let Some((_, rest)) = request.target.split_once("/blobs/uploads/") {
            let id = upload_id(rest);
            if !id.is_empty() {
                sessions
                    .entry(id.to_string())
                    .or_default()
                    .insert(request.backend);
            }
        }
    }
    let moved = sessions.values().filter(|b| b.len() > 1).count();
    eprintln!(
        "figure: requests per replica {counts:?}; {moved} of {} upload sessions served by both",
        sessions.len()
    );
    let total: usize = counts.iter().sum();
    for (replica, count) in counts.iter().enumerate() {
        assert!(
            *count * 4 >= total,
            "replica {replica} served {count} of {total} requests: not alternating"
        );
    }
    assert!(
        moved > 0,
        "no upload session was continued on the other replica: {sessions:?}"
    );
}

#[test]
fn conformance_suite_across_two_replicas() {
    if !Minio::available("conformance_suite_across_two_replicas") {
        return;
    }
    let started = Instant::now();
    let binary = find_runner(&["oci-conformance-v1.1.1", "oci-conformance"])
        .expect("conformance runner not found: run tests/setup.sh");
    let minio = Minio::start();
    let (a, b) = replicas(&minio, "conformance");
    let balancer = RoundRobin::start(&[&a.addr, &b.addr]);
    let dir = TempDir::new().unwrap();
    let env = workflow_env(&format!("http://{}", balancer.addr()), dir.path());
    run_suite(&a, &binary, &env, dir.path(), &dir.path().join("junit.xml"));
    assert_both_replicas_served(&balancer);
    figure("conformance_suite_across_two_replicas", started);
}

/// The newer runner, every optional API on. Blob GETs are not redirected to the bucket here
/// (`storage.redirect.disable`), so the replicas serve every blob byte from S3 themselves:
/// with the redirect, the bytes come from MinIO, which cannot send the
/// `Docker-Content-Digest` that `OCI_API_BLOBS_DIGEST_HEADER` requires (distribution 2.8.2
/// fails it the same way).
#[test]
fn main_branch_conformance_suite_across_two_replicas() {
    if !Minio::available("main_branch_conformance_suite_across_two_replicas") {
        return;
    }
    let started = Instant::now();
    let binary = find_runner(&["oci-conformance-main"])
        .expect("oci-conformance-main not found: run tests/setup.sh");
    let minio = Minio::start();
    let no_redirect = [("REGISTRY_STORAGE_REDIRECT_DISABLE", "true")];
    let (a, b) = replicas_with(&minio, "conformance", &no_redirect);
    let balancer = RoundRobin::start(&[&a.addr, &b.addr]);
    let dir = TempDir::new().unwrap();
    let env = main_branch_env(balancer.addr(), dir.path());
    let junit = dir.path().join("results/junit.xml");
    run_suite(&a, &binary, &env, dir.path(), &junit);
    assert_both_replicas_served(&balancer);
    figure("main_branch_conformance_suite_across_two_replicas", started);
}

// --- skopeo pushes to one replica and pulls from the other ----------------------------------

/// Pushes an image with a 24 MiB layer (three parts of the default 10 MiB `chunksize`) to
/// one replica and pulls it from the other: every blob byte-identical, no session left.
fn push_on_one_pull_from_other(minio: &Minio, tag: &str) {
    let (a, b) = replicas(minio, "images");
    let layout = TempDir::new().unwrap();
    let image = oci::write_oci_layout(layout.path(), tag, &[200_000, 24 * MIB]);
    push_layout(&a, &[], layout.path(), tag, &format!("team/app:{tag}"));

    let pulled = TempDir::new().unwrap();
    skopeo_copy(
        &[],
        &format!("docker://{}/team/app:{tag}", b.addr),
        &format!("oci:{}:{tag}", pulled.path().display()),
    );
    oci::assert_same_image(layout.path(), pulled.path(), &image.manifest_digest);
    let manifest = get_manifest_bytes(&b, "team/app", tag);
    assert!(
        manifest == image.manifest,
        "the manifest differs on the other replica"
    );
    let big = &image.layer_digests[1];
    assert_blob(&b, "team/app", big, &oci::layout_blob(layout.path(), big));
    assert_no_sessions_left(minio, "images");
}

fn get_manifest_bytes(server: &Server, name: &str, reference: &str) -> Vec<u8> {
    let resp = fetch_manifest(server, name, reference);
    assert_eq!(
        resp.status,
        200,
        "GET manifest {name}:{reference}: {}",
        resp.text()
    );
    resp.body
}

#[test]
fn image_pushed_to_one_replica_pulls_from_the_other() {
    if !Minio::available("image_pushed_to_one_replica_pulls_from_the_other") {
        return;
    }
    let started = Instant::now();
    let minio = Minio::start();
    push_on_one_pull_from_other(&minio, "single-drive");
    figure("image_pushed_to_one_replica_pulls_from_the_other", started);
}

#[test]
fn image_pushed_to_one_replica_pulls_from_the_other_on_erasure_set() {
    if !Minio::available("image_pushed_to_one_replica_pulls_from_the_other_on_erasure_set") {
        return;
    }
    let started = Instant::now();
    let minio = Minio::start_erasure();
    push_on_one_pull_from_other(&minio, "erasure-set");
    figure(
        "image_pushed_to_one_replica_pulls_from_the_other_on_erasure_set",
        started,
    );
}

// --- Tags read on one replica right after a push on the other -------------------------------

/// An OCI manifest over `config` and `layer` (digests of blobs in the repository).
fn manifest(config: &[u8], layer: &[u8]) -> Vec<u8> {
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_MANIFEST,
        "config": {"mediaType": oci::OCI_CONFIG, "digest": oci::digest_of(config), "size": config.len()},
        "layers": [{"mediaType": oci::OCI_LAYER_GZIP, "digest": oci::digest_of(layer), "size": layer.len()}],
    });
    serde_json::to_vec(&doc).unwrap()
}

fn put_manifest(server: &Server, name: &str, tag: &str, bytes: &[u8]) {
    let path = format!("/v2/{name}/manifests/{tag}");
    let headers = [("Content-Type", oci::OCI_MANIFEST)];
    let resp = http::request(&server.addr, "PUT", &path, &headers, bytes).unwrap();
    assert_eq!(
        resp.status,
        201,
        "PUT {path} on {}: {}",
        server.addr,
        resp.text()
    );
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(oci::digest_of(bytes).as_str())
    );
}

/// Asserts `server` resolves `name:tag` to exactly `bytes`, by GET and by HEAD.
fn assert_tag(server: &Server, name: &str, tag: &str, bytes: &[u8], what: &str) {
    let digest = oci::digest_of(bytes);
    let resp = fetch_manifest(server, name, tag);
    assert_eq!(
        resp.status,
        200,
        "{what}: GET {name}:{tag}: {}",
        resp.text()
    );
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(digest.as_str()),
        "{what}: a stale tag"
    );
    assert!(resp.body == bytes, "{what}: other manifest bytes");
    let path = format!("/v2/{name}/manifests/{tag}");
    let accept = [("Accept", oci::OCI_MANIFEST)];
    let head = http::request(&server.addr, "HEAD", &path, &accept, &[]).unwrap();
    assert_eq!(head.status, 200, "{what}: HEAD {name}:{tag}");
    assert_eq!(
        head.header("docker-content-digest"),
        Some(digest.as_str()),
        "{what}: HEAD"
    );
}

#[test]
fn tag_moved_on_one_replica_reads_at_once_on_the_other() {
    if !Minio::available("tag_moved_on_one_replica_reads_at_once_on_the_other") {
        return;
    }
    let started = Instant::now();
    let minio = Minio::start();
    let (a, b) = replicas(&minio, "tags");
    let name = "team/moving";
    let layer = oci::random_bytes(5, 4000);
    push_blob(&a, name, &layer);
    let manifests: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            let config = format!(r#"{{"architecture":"amd64","os":"linux","n":{i}}}"#);
            push_blob(&a, name, config.as_bytes());
            manifest(config.as_bytes(), &layer)
        })
        .collect();

    put_manifest(&a, name, "current", &manifests[0]);
    assert_tag(
        &b,
        name,
        "current",
        &manifests[0],
        "first push on A, read on B",
    );
    // Each move is read on the other replica right away, after it read the old target.
    let moves = [(&a, &b, 1), (&b, &a, 2), (&a, &b, 3), (&a, &b, 0)];
    for (round, (writer, reader, which)) in moves.into_iter().enumerate() {
        put_manifest(writer, name, "current", &manifests[which]);
        let what = format!("move {round} on {}, read on {}", writer.addr, reader.addr);
        assert_tag(reader, name, "current", &manifests[which], &what);
        assert_tag(writer, name, "current", &manifests[which], &what);
    }
    // A new tag on A is listed on B at once.
    put_manifest(&a, name, "second", &manifests[2]);
    let tags = get_json(&b, &format!("/v2/{name}/tags/list"));
    assert_eq!(tags["tags"], json!(["current", "second"]), "tags on B");
    figure(
        "tag_moved_on_one_replica_reads_at_once_on_the_other",
        started,
    );
}

/// An image index with no children: a manifest that needs no blobs.
fn put_empty_index(server: &Server, name: &str) -> String {
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"annotations":{{"name":"{name}"}}}}"#
    );
    put_manifest_typed(
        server,
        name,
        "v1",
        body.as_bytes(),
        "application/vnd.oci.image.index.v1+json",
    )
}

fn put_manifest_typed(
    server: &Server,
    name: &str,
    tag: &str,
    bytes: &[u8],
    media_type: &str,
) -> String {
    let resp = http::request(
        &server.addr,
        "PUT",
        &format!("/v2/{name}/manifests/{tag}"),
        &[("Content-Type", media_type)],
        bytes,
    )
    .unwrap();
    assert_eq!(resp.status, 201, "{}", resp.text());
    resp.header("docker-content-digest").unwrap().to_owned()
}

/// Polls `server`'s catalog until it is `want`.
fn catalog_becomes(server: &Server, want: serde_json::Value, what: &str) {
    let started = Instant::now();
    loop {
        let got = get_json(server, "/v2/_catalog")["repositories"].clone();
        if got == want {
            eprintln!("figure: {what} after {:.1?}", started.elapsed());
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{what}: the catalog is {got}, not {want}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn replicas_list_each_others_repositories_within_the_refresh_interval() {
    if !Minio::available("replicas_list_each_others_repositories_within_the_refresh_interval")
        || Target::from_env().skip_oci_1_1("the name index's refresh across replicas")
    {
        return;
    }
    let minio = Minio::start();
    let (a, b) = replicas_with(&minio, "names", &[("REGISTRY_CATALOG_REFRESH", "1s")]);
    put_empty_index(&a, "team/app");
    let doomed = put_empty_index(&a, "deep/a/b/c");
    assert_eq!(
        get_json(&a, "/v2/_catalog")["repositories"],
        json!(["deep/a/b/c", "team/app"]),
        "A lists its pushes at once"
    );
    catalog_becomes(&b, json!(["deep/a/b/c", "team/app"]), "B lists A's pushes");
    let markers: BTreeSet<String> = minio
        .list_keys("names", "dockyard/dockyard/names/")
        .into_iter()
        .collect();
    assert_eq!(
        markers,
        BTreeSet::from([
            "dockyard/dockyard/names/deep!a!b!c".to_owned(),
            "dockyard/dockyard/names/team!app".to_owned()
        ])
    );
    // On an object store a repository whose last manifest is deleted is gone (no empty
    // directories): B deletes it, A stops listing it.
    let resp = http::request(
        &b.addr,
        "DELETE",
        &format!("/v2/deep/a/b/c/manifests/{doomed}"),
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(resp.status, 202, "{}", resp.text());
    assert_eq!(
        get_json(&b, "/v2/_catalog")["repositories"],
        json!(["team/app"])
    );
    catalog_becomes(&a, json!(["team/app"]), "A drops the repository B emptied");
}

// --- Interop with distribution 2.8.2 on the same bucket -------------------------------------

fn push_and_pull(
    from: &Server,
    to: &Server,
    layout: &TempDir,
    tag: &str,
    reference: &str,
) -> ImageInfo {
    let image = oci::write_oci_layout(layout.path(), tag, &[150_000, 14 * MIB]);
    push_layout(from, &[], layout.path(), tag, reference);
    let pulled = TempDir::new().unwrap();
    skopeo_copy(
        &[],
        &format!("docker://{}/{reference}", to.addr),
        &format!("oci:{}:{tag}", pulled.path().display()),
    );
    oci::assert_same_image(layout.path(), pulled.path(), &image.manifest_digest);
    image
}

#[test]
fn distribution_and_dockyard_share_a_bucket() {
    if !Minio::available("distribution_and_dockyard_share_a_bucket") {
        return;
    }
    let started = Instant::now();
    let minio = Minio::start();
    minio.create_bucket("shared");
    // Dockyard reads the bytes distribution wrote itself (no redirect to the bucket).
    let dockyard = Server::builder()
        .target(Target::Dockyard)
        .envs(minio.registry_env("shared", Some(ROOT)))
        .env("REGISTRY_STORAGE_REDIRECT_DISABLE", "true")
        .start();
    let distribution = Server::builder()
        .target(Target::Distribution)
        .envs(minio.distribution_env("shared", Some(ROOT)))
        .start();
    let layout = TempDir::new().unwrap();
    push_and_pull(
        &dockyard,
        &distribution,
        &layout,
        "dy",
        "interop/from-dockyard:v1",
    );
    push_and_pull(
        &distribution,
        &dockyard,
        &layout,
        "dist",
        "interop/from-distribution:v1",
    );
    // A second tag each way, so the tag lists have something to agree on.
    push_layout(
        &dockyard,
        &[],
        layout.path(),
        "dist",
        "interop/from-distribution:v2",
    );
    push_layout(
        &distribution,
        &[],
        layout.path(),
        "dy",
        "interop/from-dockyard:v2",
    );

    let catalog = get_json(&dockyard, "/v2/_catalog");
    assert_eq!(
        catalog["repositories"],
        json!(["interop/from-distribution", "interop/from-dockyard"]),
        "Dockyard's catalog"
    );
    assert_eq!(
        get_json(&distribution, "/v2/_catalog"),
        catalog,
        "the catalogs differ"
    );
    for repo in ["interop/from-distribution", "interop/from-dockyard"] {
        let path = format!("/v2/{repo}/tags/list");
        let tags = get_json(&dockyard, &path);
        assert_eq!(tags["tags"], json!(["v1", "v2"]), "{repo} on Dockyard");
        assert_eq!(
            get_json(&distribution, &path),
            tags,
            "{repo}: the tag lists differ"
        );
        for tag in ["v1", "v2"] {
            assert!(
                get_manifest_bytes(&dockyard, repo, tag)
                    == get_manifest_bytes(&distribution, repo, tag),
                "{repo}:{tag} differs"
            );
        }
    }
    figure("distribution_and_dockyard_share_a_bucket", started);
}
