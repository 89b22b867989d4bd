//! containerd, the node runtime, pulling from the registry under test: directly with
//! `ctr images pull --plain-http`, and as a mirror configured in a `hosts.toml` (the way the
//! node agent configures nodes), where every request carries `?ns=<upstream host>`.

use super::common::containerd::{Containerd, assert_pulled};
use super::common::oci;
use super::common::registry::push_layout;
use super::common::{Server, run, server};
use tempfile::TempDir;

#[test]
fn containerd_pulls_directly_over_plain_http() {
    let server = Server::start();
    let tmp = TempDir::new().unwrap();
    let image = oci::write_oci_layout(tmp.path(), "ctr-direct", &[300 << 10, 1 << 10]);
    push_layout(&server, &[], tmp.path(), "ctr-direct", "node/app:v1");

    let containerd = Containerd::start();
    let name = format!("{}/node/app:v1", server.addr);
    run(&mut containerd.ctr(&[
        "images",
        "pull",
        "--plain-http",
        "--snapshotter",
        "native",
        &name,
    ]));
    assert_pulled(&containerd, &name, &image);
}

#[test]
fn containerd_pulls_through_a_hosts_toml_mirror_with_ns() {
    let server = Server::start();
    let tmp = TempDir::new().unwrap();
    let image = oci::write_oci_layout(tmp.path(), "ctr-mirror", &[200 << 10]);
    push_layout(&server, &[], tmp.path(), "ctr-mirror", "library/app:v2");

    let containerd = Containerd::start();
    let certs_d = containerd.hosts_dir("example.test", &server.addr);
    let name = "example.test/library/app:v2";
    run(containerd
        .ctr(&["images", "pull", "--snapshotter", "native", "--hosts-dir"])
        .arg(&certs_d)
        .arg(name));
    assert_pulled(&containerd, name, &image);

    // Every request of the mirror pull named the upstream namespace.
    let manifest_path = "/v2/library/app/manifests/v2?ns=example.test";
    let resolved = server.access_lines("HEAD", manifest_path);
    let fetched = server.access_lines("GET", manifest_path);
    assert!(
        resolved
            .iter()
            .chain(&fetched)
            .any(|l| server::has_status(l, 200)),
        "no 200 for the manifest with ?ns=example.test:\n{}",
        server.log()
    );
    for digest in image.layer_digests.iter().chain([&image.config_digest]) {
        let path = format!("/v2/library/app/blobs/{digest}?ns=example.test");
        let lines = server.access_lines("GET", &path);
        assert!(
            lines.iter().any(|l| server::has_status(l, 200)),
            "no 200 for GET {path}:\n{}",
            server.log()
        );
    }
}
