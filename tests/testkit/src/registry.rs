//! Talking to the registry under test the way users do: skopeo pushes, pulls and raw inspects,
//! and direct manifest / tag / catalog requests, shared by the client, interop and crash tests.

use std::path::Path;

use serde_json::Value;

use super::cmd::{cmd, run};
use super::http;
use super::oci::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use super::server::Server;

/// `skopeo copy` with TLS verification off on both sides and extra arguments.
pub fn skopeo_copy(extra: &[&str], src: &str, dst: &str) {
    let mut args = vec!["copy", "--src-tls-verify=false", "--dest-tls-verify=false"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[src, dst]);
    run(&mut cmd("skopeo", args));
}

/// Pushes tag `tag` of the OCI layout at `layout` to `<server>/<reference>` with skopeo (plus
/// `extra` flags such as `--all` or `--format v2s2`) and returns the `docker://` reference.
pub fn push_layout(
    server: &Server,
    extra: &[&str],
    layout: &Path,
    tag: &str,
    reference: &str,
) -> String {
    let remote = format!("docker://{}/{reference}", server.addr);
    skopeo_copy(extra, &format!("oci:{}:{tag}", layout.display()), &remote);
    remote
}

/// The manifest bytes `skopeo inspect --raw` prints for `<server>/<reference>`.
pub fn skopeo_inspect_raw(server: &Server, reference: &str) -> Vec<u8> {
    let image = format!("docker://{}/{reference}", server.addr);
    let out = run(&mut cmd(
        "skopeo",
        ["inspect", "--raw", "--tls-verify=false", &image],
    ));
    out.trim_end().as_bytes().to_vec()
}

/// Parses JSON, panicking with the text when it is not.
pub fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// `GET /v2/<name>/manifests/<reference>` accepting every manifest type; asserts 200.
pub fn get_manifest(server: &Server, name: &str, reference: &str) -> http::Response {
    let resp = fetch_manifest(server, name, reference);
    assert_eq!(
        resp.status,
        200,
        "GET /v2/{name}/manifests/{reference}: {}",
        resp.text()
    );
    resp
}

/// `GET /v2/<name>/manifests/<reference>` accepting every manifest type, whatever the status.
pub fn fetch_manifest(server: &Server, name: &str, reference: &str) -> http::Response {
    let accept = format!("{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}");
    let path = format!("/v2/{name}/manifests/{reference}");
    http::request(&server.addr, "GET", &path, &[("Accept", &accept)], &[]).unwrap()
}

/// `GET <path>` as JSON; asserts 200.
pub fn get_json(server: &Server, path: &str) -> Value {
    let resp = http::request(&server.addr, "GET", path, &[], &[]).unwrap();
    assert_eq!(resp.status, 200, "GET {path}: {}", resp.text());
    json(&resp.body)
}
