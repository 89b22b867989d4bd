//! podman and buildah against the registry under test, each with a private vfs storage root in
//! a temp dir. Podman re-compresses layers on push, so its round trip is checked by the
//! uncompressed layer digests (`RootFS.Layers`) rather than by blob digests.

use std::path::Path;

use super::common::oci;
use super::common::podman::isolated;
use super::common::registry::{get_manifest, json, push_layout};
use super::common::{Server, cmd, run};
use tempfile::TempDir;

fn podman(root: &Path, args: &[&str]) -> String {
    run(isolated("podman", root).args(args))
}

/// `podman image inspect` of one image, as JSON.
fn podman_inspect(root: &Path, image: &str) -> serde_json::Value {
    let out = podman(root, &["image", "inspect", image]);
    json(out.as_bytes())[0].clone()
}

#[test]
fn podman_push_and_pull_round_trip() {
    let server = Server::start();
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("src");
    let image = oci::write_oci_layout(&src, "podman", &[256 << 10, 64 << 10]);
    push_layout(&server, &[], &src, "podman", "podman/src:v1");

    let first = tmp.path().join("podman-a");
    let src_ref = format!("{}/podman/src:v1", server.addr);
    let dst_ref = format!("{}/podman/dst:v1", server.addr);
    podman(&first, &["pull", "--tls-verify=false", &src_ref]);
    let pulled = podman_inspect(&first, &src_ref);
    assert_eq!(pulled["Digest"], image.manifest_digest.as_str());
    assert_eq!(
        pulled["RootFS"]["Layers"],
        serde_json::json!(image.diff_ids)
    );
    podman(&first, &["push", "--tls-verify=false", &src_ref, &dst_ref]);

    // The pushed manifest is complete: every blob it names is served with its size.
    let manifest = json(&get_manifest(&server, "podman/dst", "v1").body);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    for desc in layers.iter().chain([&manifest["config"]]) {
        let path = format!("/v2/podman/dst/blobs/{}", desc["digest"].as_str().unwrap());
        let (status, _, body) = super::common::http_get(&server.addr, &path);
        assert_eq!(status, 200, "GET {path}");
        assert_eq!(body.len() as u64, desc["size"].as_u64().unwrap(), "{path}");
        assert_eq!(oci::digest_of(&body), desc["digest"].as_str().unwrap());
    }

    // A fresh storage pulls what podman pushed and gets the same filesystem layers.
    let second = tmp.path().join("podman-b");
    podman(&second, &["pull", "--tls-verify=false", &dst_ref]);
    let again = podman_inspect(&second, &dst_ref);
    assert_eq!(again["RootFS"]["Layers"], serde_json::json!(image.diff_ids));
    assert_eq!(again["Size"], pulled["Size"]);
    assert_eq!(again["Config"]["Labels"]["dockyard.test"], "podman");
}

#[test]
fn buildah_uncompressed_layers_round_trip() {
    let server = Server::start();
    let tmp = TempDir::new().unwrap();
    let storage = tmp.path().join("buildah");
    let file = tmp.path().join("hello.txt");
    std::fs::write(&file, oci::random_bytes(7, 100 << 10)).unwrap();
    let container = run(isolated("buildah", &storage).args(["from", "scratch"]));
    let container = container.trim();
    run(isolated("buildah", &storage)
        .args(["copy", container])
        .arg(&file)
        .arg("/hello.txt"));
    let layout = tmp.path().join("layout");
    let target = format!("oci:{}:built", layout.display());
    run(isolated("buildah", &storage).args(["commit", container, &target]));
    let digest = oci::layout_ref(&layout, "built");
    let manifest = json(&oci::layout_blob(&layout, &digest));
    assert_eq!(
        manifest["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar",
        "buildah should write an uncompressed layer"
    );

    // skopeo would gzip the layer on the way; crane moves the layout's blobs as they are.
    let remote = format!("{}/buildah/img:v1", server.addr);
    run(cmd("crane", ["push", "--insecure"])
        .arg(&layout)
        .arg(&remote));
    let served = run(&mut cmd("crane", ["digest", "--insecure", &remote]));
    assert_eq!(served.trim(), digest);
    let out = tmp.path().join("out");
    run(cmd("crane", ["pull", "--insecure", "--format", "oci", &remote]).arg(&out));
    oci::assert_same_image(&layout, &out, &digest);
}
