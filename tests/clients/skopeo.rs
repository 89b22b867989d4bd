//! skopeo against the registry under test: OCI and Docker v2s2 pushes pulled back bit-identical,
//! image indexes with `--all`, `list-tags`, `delete` with deletion on and off, and cross-repository
//! blob mounts seen in the server's access log.

use std::fs;

use super::common::oci::{self, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use super::common::registry::{get_json, get_manifest, json, skopeo_copy, skopeo_inspect_raw};
use super::common::{Server, cmd, http, run, run_fail, server};
use tempfile::TempDir;

#[test]
fn skopeo_oci_push_and_pull_back_identical() {
    let server = Server::start();
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("src");
    let image = oci::write_oci_layout(&src, "v1", &[1 << 20, 300 << 10, 10]);
    let remote = format!("docker://{}/a/b/c:v1", server.addr);
    skopeo_copy(&[], &format!("oci:{}:v1", src.display()), &remote);

    let raw = skopeo_inspect_raw(&server, "a/b/c:v1");
    assert_eq!(raw, image.manifest, "registry changed the manifest bytes");
    let resp = get_manifest(&server, "a/b/c", "v1");
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(image.manifest_digest.as_str())
    );
    assert_eq!(resp.header("content-type"), Some(OCI_MANIFEST));

    let out = tmp.path().join("out");
    skopeo_copy(&[], &remote, &format!("oci:{}:v1", out.display()));
    assert_eq!(oci::layout_ref(&out, "v1"), image.manifest_digest);
    oci::assert_same_image(&src, &out, &image.manifest_digest);
}

#[test]
fn skopeo_v2s2_push_keeps_docker_media_type() {
    let server = Server::start();
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("src");
    let image = oci::write_oci_layout(&src, "v2s2", &[200 << 10, 5000]);
    let remote = format!("docker://{}/docker/img:v1", server.addr);
    skopeo_copy(
        &["--format", "v2s2"],
        &format!("oci:{}:v2s2", src.display()),
        &remote,
    );

    let raw = skopeo_inspect_raw(&server, "docker/img:v1");
    let manifest = json(&raw);
    assert_eq!(manifest["mediaType"], DOCKER_MANIFEST);
    let layers: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(layers, image.layer_digests, "layers were re-encoded");
    let resp = get_manifest(&server, "docker/img", "v1");
    assert_eq!(resp.header("content-type"), Some(DOCKER_MANIFEST));
    assert_eq!(resp.body, raw);
    let digest = oci::digest_of(&raw);
    assert_eq!(resp.header("docker-content-digest"), Some(digest.as_str()));

    // Pull with the `dir:` transport, which keeps the manifest as it is.
    let out = tmp.path().join("dir");
    skopeo_copy(&[], &remote, &format!("dir:{}", out.display()));
    assert_eq!(fs::read(out.join("manifest.json")).unwrap(), raw);
    for digest in &image.layer_digests {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let pulled = fs::read(out.join(hex)).unwrap();
        assert!(
            pulled == oci::layout_blob(&src, digest),
            "layer {digest} differs"
        );
    }
}

#[test]
fn skopeo_copy_all_pushes_every_platform_of_an_index() {
    let server = Server::start();
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("src");
    let index = oci::write_oci_index_layout(&src, "multi", &[64 << 10]);
    let remote = format!("docker://{}/multi/arch:v1", server.addr);
    skopeo_copy(&["--all"], &format!("oci:{}:multi", src.display()), &remote);

    assert_eq!(skopeo_inspect_raw(&server, "multi/arch:v1"), index.index);
    let resp = get_manifest(&server, "multi/arch", "v1");
    assert_eq!(resp.header("content-type"), Some(OCI_INDEX));
    for image in &index.images {
        let resp = get_manifest(&server, "multi/arch", &image.manifest_digest);
        assert_eq!(resp.body, image.manifest);
    }

    let out = tmp.path().join("out");
    skopeo_copy(&["--all"], &remote, &format!("oci:{}:v1", out.display()));
    assert_eq!(oci::layout_ref(&out, "v1"), index.index_digest);
    oci::assert_same_image(&src, &out, &index.index_digest);
}

#[test]
fn skopeo_list_tags() {
    let server = Server::start();
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("src");
    for tag in ["1.0", "1.1", "latest"] {
        oci::write_oci_layout(&src, tag, &[1000]);
        let dst = format!("docker://{}/tags/repo:{tag}", server.addr);
        skopeo_copy(&[], &format!("oci:{}:{tag}", src.display()), &dst);
    }
    let repo = format!("docker://{}/tags/repo", server.addr);
    let out = run(&mut cmd(
        "skopeo",
        ["list-tags", "--tls-verify=false", &repo],
    ));
    let listed = json(out.as_bytes());
    let mut tags: Vec<&str> = listed["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["1.0", "1.1", "latest"]);
}

#[test]
fn skopeo_delete_removes_the_manifest_when_enabled() {
    let server = Server::builder().delete_enabled(true).start();
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("src");
    let doomed = oci::write_oci_layout(&src, "doomed", &[2000]);
    let kept = oci::write_oci_layout(&src, "kept", &[3000]);
    for tag in ["doomed", "kept"] {
        let dst = format!("docker://{}/del/repo:{tag}", server.addr);
        skopeo_copy(&[], &format!("oci:{}:{tag}", src.display()), &dst);
    }
    let target = format!("docker://{}/del/repo:doomed", server.addr);
    run(&mut cmd(
        "skopeo",
        ["delete", "--tls-verify=false", &target],
    ));

    let failed = run_fail(&mut cmd(
        "skopeo",
        ["inspect", "--raw", "--tls-verify=false", &target],
    ));
    assert!(
        failed.stderr.contains("manifest unknown"),
        "{}",
        failed.stderr
    );
    assert_eq!(
        get_json(&server, "/v2/del/repo/tags/list"),
        serde_json::json!({"name": "del/repo", "tags": ["kept"]})
    );
    let by_digest = format!("/v2/del/repo/manifests/{}", doomed.manifest_digest);
    assert_eq!(http::http_get(&server.addr, &by_digest).0, 404);
    assert_eq!(skopeo_inspect_raw(&server, "del/repo:kept"), kept.manifest);
}

#[test]
fn skopeo_delete_fails_clearly_when_disabled() {
    let server = Server::builder().delete_enabled(false).start();
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("src");
    let image = oci::write_oci_layout(&src, "nodelete", &[2000]);
    let target = format!("docker://{}/nodel/repo:v1", server.addr);
    skopeo_copy(&[], &format!("oci:{}:nodelete", src.display()), &target);

    let failed = run_fail(&mut cmd(
        "skopeo",
        ["delete", "--tls-verify=false", &target],
    ));
    let stderr = failed.stderr.to_lowercase();
    assert!(
        stderr.contains("unsupported") && stderr.contains("405"),
        "delete should fail with 405 UNSUPPORTED, got: {}",
        failed.stderr
    );
    assert_eq!(skopeo_inspect_raw(&server, "nodel/repo:v1"), image.manifest);
}

#[test]
fn skopeo_second_push_mounts_blobs_across_repositories() {
    let server = Server::start();
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("src");
    let image = oci::write_oci_layout(&src, "mount", &[512 << 10, 128 << 10]);
    let layout = format!("oci:{}:mount", src.display());
    skopeo_copy(
        &[],
        &layout,
        &format!("docker://{}/first/img:v1", server.addr),
    );
    skopeo_copy(
        &[],
        &layout,
        &format!("docker://{}/second/img:v1", server.addr),
    );

    for digest in &image.layer_digests {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let mounts: Vec<String> = server
            .access_lines("POST", "/v2/second/img/blobs/uploads/")
            .into_iter()
            .filter(|l| l.contains("mount=") && l.contains(hex))
            .collect();
        assert!(
            mounts.iter().any(|l| server::has_status(l, 201)),
            "no cross-repo mount of {digest} answered 201; mount requests: {mounts:#?}\nlog:\n{}",
            server.log()
        );
        let uploads: Vec<String> = server
            .access_lines("PUT", "/v2/second/img/blobs/uploads/")
            .into_iter()
            .filter(|l| l.contains(hex))
            .collect();
        assert!(uploads.is_empty(), "{digest} uploaded again: {uploads:#?}");
    }
    let out = tmp.path().join("out");
    let remote = format!("docker://{}/second/img:v1", server.addr);
    skopeo_copy(&[], &remote, &format!("oci:{}:v1", out.display()));
    oci::assert_same_image(&src, &out, &image.manifest_digest);
}
