//! Real-client round trips against the registry under test: skopeo, podman, containerd (`ctr`,
//! direct and through a hosts.toml mirror), helm, crane and oras. Each test starts its own
//! server on loopback; `DOCKYARD_TEST_TARGET=distribution` runs them against distribution 2.8.2.

#[allow(
    dead_code,
    unused_imports,
    reason = "each test crate uses a subset of the shared helpers"
)]
mod common;

#[path = "clients/containerd.rs"]
mod containerd;
#[path = "clients/helm.rs"]
mod helm;
#[path = "clients/oras_crane.rs"]
mod oras_crane;
#[path = "clients/podman.rs"]
mod podman;
#[path = "clients/skopeo.rs"]
mod skopeo;

use std::path::Path;

use common::oci::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use common::{Server, cmd, http, run};
use serde_json::Value;

/// `skopeo copy` with TLS verification off on both sides and extra arguments.
fn skopeo_copy(extra: &[&str], src: &str, dst: &str) {
    let mut args = vec!["copy", "--src-tls-verify=false", "--dest-tls-verify=false"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[src, dst]);
    run(&mut cmd("skopeo", args));
}

/// Pushes tag `tag` of the OCI layout at `layout` to `<server>/<reference>` with skopeo and
/// returns the `docker://` reference.
fn push_layout(server: &Server, layout: &Path, tag: &str, reference: &str) -> String {
    let remote = format!("docker://{}/{reference}", server.addr);
    skopeo_copy(&[], &format!("oci:{}:{tag}", layout.display()), &remote);
    remote
}

fn skopeo_inspect_raw(server: &Server, reference: &str) -> Vec<u8> {
    let image = format!("docker://{}/{reference}", server.addr);
    let out = run(&mut cmd(
        "skopeo",
        ["inspect", "--raw", "--tls-verify=false", &image],
    ));
    out.trim_end().as_bytes().to_vec()
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// `GET /v2/<name>/manifests/<reference>` accepting every manifest type; asserts 200.
fn get_manifest(server: &Server, name: &str, reference: &str) -> http::Response {
    let accept = format!("{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}");
    let path = format!("/v2/{name}/manifests/{reference}");
    let resp = http::request(&server.addr, "GET", &path, &[("Accept", &accept)], &[]).unwrap();
    assert_eq!(resp.status, 200, "GET {path}: {}", resp.text());
    resp
}

mod helpers_check {
    //! Sanity checks of the shared helpers that every client test relies on.
    use super::common::oci;

    #[test]
    fn layout_writer_is_deterministic_and_self_consistent() {
        let a = tempfile::TempDir::new().unwrap();
        let b = tempfile::TempDir::new().unwrap();
        let one = oci::write_oci_layout(a.path(), "t", &[100, 0]);
        let two = oci::write_oci_layout(b.path(), "t", &[100, 0]);
        assert_eq!(one.manifest_digest, two.manifest_digest);
        let blobs = oci::reachable_blobs(a.path(), &one.manifest_digest);
        assert_eq!(blobs.len(), 4, "manifest + config + 2 layers");
        let other = oci::write_oci_layout(a.path(), "u", &[100, 0]);
        assert_ne!(one.layer_digests, other.layer_digests);
        assert_eq!(oci::layout_ref(a.path(), "t"), one.manifest_digest);
    }
}
