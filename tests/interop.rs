//! Dockyard and distribution 2.8.2 over the SAME data directory, both ways: images (OCI, Docker
//! v2s2, an image index) pushed to one server are served bit-identical by the other after it
//! takes over the directory, with the same tag lists and catalog, and a delete done by one is
//! seen by the other. This is what lets an existing `/var/lib/registry` volume move to Dockyard
//! and back.

use dockyard_testkit as common;

use std::fs;
use std::path::Path;

use common::oci::{self, ImageInfo, IndexInfo};
use common::registry::{
    fetch_manifest, get_json, json, push_layout, skopeo_copy, skopeo_inspect_raw,
};
use common::{Server, Target, cmd, run};
use serde_json::json;
use tempfile::TempDir;

/// What was pushed by the first server.
struct Pushed {
    layout: tempfile::TempDir,
    oci: ImageInfo,
    doomed: ImageInfo,
    index: IndexInfo,
    docker: ImageInfo,
    /// The v2s2 manifest skopeo made from `docker`, as the first server stored it.
    docker_manifest: Vec<u8>,
}

fn start(target: Target, data: &Path) -> Server {
    Server::builder()
        .target(target)
        .data_dir(data)
        .delete_enabled(true)
        .start()
}

fn push_everything(server: &Server) -> Pushed {
    let layout = TempDir::new().unwrap();
    let dir = layout.path();
    let oci = oci::write_oci_layout(dir, "oci", &[400 << 10, 2000]);
    let doomed = oci::write_oci_layout(dir, "doomed", &[3000]);
    let docker = oci::write_oci_layout(dir, "docker", &[100 << 10]);
    let index = oci::write_oci_index_layout(dir, "multi", &[50 << 10]);
    push_layout(server, &[], dir, "oci", "interop/oci:v1");
    push_layout(server, &[], dir, "oci", "interop/oci:v2");
    push_layout(server, &[], dir, "doomed", "interop/oci:doomed");
    push_layout(
        server,
        &["--format", "v2s2"],
        dir,
        "docker",
        "interop/deep/docker:v1",
    );
    push_layout(server, &["--all"], dir, "multi", "interop/multi:v1");
    let docker_manifest = skopeo_inspect_raw(server, "interop/deep/docker:v1");
    assert_eq!(json(&docker_manifest)["mediaType"], oci::DOCKER_MANIFEST);
    Pushed {
        layout,
        oci,
        doomed,
        index,
        docker,
        docker_manifest,
    }
}

/// skopeo `delete` of `reference` (which deletes the manifest by digest).
fn skopeo_delete(server: &Server, reference: &str) {
    let image = format!("docker://{}/{reference}", server.addr);
    run(&mut cmd("skopeo", ["delete", "--tls-verify=false", &image]));
}

/// Asserts `server` serves everything in `pushed` bit-identical, except what was deleted.
fn assert_serves_everything(server: &Server, pushed: &Pushed) {
    let src = pushed.layout.path();
    let out = TempDir::new().unwrap();
    let out = out.path();

    for tag in ["v1", "v2"] {
        let remote = format!("docker://{}/interop/oci:{tag}", server.addr);
        skopeo_copy(&[], &remote, &format!("oci:{}:{tag}", out.display()));
        assert_eq!(oci::layout_ref(out, tag), pushed.oci.manifest_digest);
        oci::assert_same_image(src, out, &pushed.oci.manifest_digest);
    }

    let remote = format!("docker://{}/interop/multi:v1", server.addr);
    skopeo_copy(&["--all"], &remote, &format!("oci:{}:multi", out.display()));
    assert_eq!(oci::layout_ref(out, "multi"), pushed.index.index_digest);
    oci::assert_same_image(src, out, &pushed.index.index_digest);

    let raw = skopeo_inspect_raw(server, "interop/deep/docker:v1");
    assert_eq!(raw, pushed.docker_manifest, "v2s2 manifest bytes changed");
    let dir = out.join("docker-dir");
    let remote = format!("docker://{}/interop/deep/docker:v1", server.addr);
    skopeo_copy(&[], &remote, &format!("dir:{}", dir.display()));
    for digest in &pushed.docker.layer_digests {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let pulled = fs::read(dir.join(hex)).unwrap();
        assert!(
            pulled == oci::layout_blob(src, digest),
            "layer {digest} differs"
        );
    }

    let doomed = fetch_manifest(server, "interop/oci", &pushed.doomed.manifest_digest);
    assert_eq!(doomed.status, 404, "deleted manifest is served again");
    assert_eq!(
        get_json(server, "/v2/interop/oci/tags/list"),
        json!({"name": "interop/oci", "tags": ["v1", "v2"]})
    );
    assert_eq!(
        get_json(server, "/v2/interop/multi/tags/list"),
        json!({"name": "interop/multi", "tags": ["v1"]})
    );
}

/// Pushes with `first`, serves with `second` on the same directory, deletes with `second`, and
/// checks `first` sees that delete when it serves the directory again.
fn hand_over(first: Target, second: Target) {
    let data = TempDir::new().unwrap();
    let mut server = start(first, data.path());
    let pushed = push_everything(&server);
    skopeo_delete(&server, "interop/oci:doomed");
    assert_eq!(
        get_json(&server, "/v2/interop/oci/tags/list"),
        json!({"name": "interop/oci", "tags": ["v1", "v2"]}),
        "{first:?} keeps the deleted tag"
    );
    assert_graceful(first, server.stop());

    let mut server = start(second, data.path());
    assert_serves_everything(&server, &pushed);
    assert_eq!(
        get_json(&server, "/v2/_catalog"),
        json!({"repositories": ["interop/deep/docker", "interop/multi", "interop/oci"]})
    );
    skopeo_delete(&server, "interop/deep/docker:v1");
    assert_graceful(second, server.stop());

    let server = start(first, data.path());
    let gone = fetch_manifest(&server, "interop/deep/docker", "v1");
    assert_eq!(
        gone.status, 404,
        "{first:?} still serves what {second:?} deleted"
    );
    let digest = oci::digest_of(&pushed.docker_manifest);
    let gone = fetch_manifest(&server, "interop/deep/docker", &digest);
    assert_eq!(
        gone.status, 404,
        "{first:?} still serves the deleted manifest by digest"
    );
    let raw = skopeo_inspect_raw(&server, "interop/oci:v1");
    assert_eq!(raw, pushed.oci.manifest);
    let raw = skopeo_inspect_raw(&server, "interop/multi:v1");
    assert_eq!(raw, pushed.index.index);
}

/// Dockyard exits 0 on SIGTERM (distribution 2.8.2 dies of the signal, which is fine for it).
fn assert_graceful(target: Target, status: std::process::ExitStatus) {
    if target == Target::Dockyard {
        assert!(
            status.success(),
            "dockyard did not shut down cleanly on SIGTERM: {status}"
        );
    }
}

/// The Dockyard side: Dockyard itself, or distribution when validating the tests with
/// `DOCKYARD_TEST_TARGET=distribution`.
fn dockyard() -> Target {
    Target::from_env()
}

#[test]
fn dockyard_serves_what_distribution_wrote() {
    hand_over(Target::Distribution, dockyard());
}

#[test]
fn distribution_serves_what_dockyard_wrote() {
    hand_over(dockyard(), Target::Distribution);
}
