//! A Dockyard pull-through mirror for a test and the upstream content behind it: start the
//! mirror with its proxy settings, seed an upstream with an image, and read the upstream's
//! blob GETs from its access log. Shared by the mirror and node-agent tests.

use std::path::Path;

use super::oci::{ImageInfo, write_oci_layout};
use super::registry::skopeo_copy;
use super::server::{Server, Target};

/// A Dockyard mirror started with `env` (its proxy settings).
pub fn mirror(env: &[(&str, &str)]) -> Server {
    let mut builder = Server::builder().target(Target::Dockyard);
    for (k, v) in env {
        builder = builder.env(k, v);
    }
    builder.start()
}

/// Writes an image with `layers` to the layout at `layout` (tagged `tag` there) and pushes
/// it with skopeo (and `extra` flags) to `<upstream>/<repo>:v1`.
pub fn seed(
    upstream: &Server,
    layout: &Path,
    tag: &str,
    layers: &[usize],
    repo: &str,
    extra: &[&str],
) -> ImageInfo {
    let image = write_oci_layout(layout, tag, layers);
    skopeo_copy(
        extra,
        &format!("oci:{}:{tag}", layout.display()),
        &format!("docker://{}/{repo}:v1", upstream.addr),
    );
    image
}

/// Upstream GETs of blobs, from distribution's combined access log.
pub fn blob_gets(upstream: &Server) -> Vec<String> {
    upstream
        .log()
        .lines()
        .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
        .map(str::to_owned)
        .collect()
}
