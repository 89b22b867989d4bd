//! Real-client round trips against the registry under test: skopeo, podman, containerd (`ctr`,
//! direct and through a hosts.toml mirror), helm, crane and oras. Each test starts its own
//! server on loopback; `DOCKYARD_TEST_TARGET=distribution` runs them against distribution 2.8.2.

use dockyard_testkit as common;

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

#[test]
fn registry_answers_base_and_health_endpoints() {
    let server = common::Server::start();
    let (status, headers, body) = common::http_get(&server.addr, "/v2/");
    assert_eq!(status, 200);
    let version = headers
        .iter()
        .find(|(k, _)| k == "docker-distribution-api-version");
    assert_eq!(version.map(|(_, v)| v.as_str()), Some("registry/2.0"));
    assert_eq!(body, b"{}");
    if server.target == common::Target::Distribution {
        eprintln!("note: distribution 2.8.2 has no /healthz without a health config");
        return;
    }
    assert_eq!(common::http_get(&server.addr, "/healthz").0, 200);
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
