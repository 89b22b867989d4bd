//! `dockyard serve` as a pull-through cache, with real upstreams on loopback: distribution
//! 2.8.2 with htpasswd (the mirror's own credentials, as registry:2's `proxy.username`) and
//! Dockyard itself. Clients pull through the mirror with skopeo and containerd (a hosts.toml
//! mirror whose `server` is dead, so only the mirror can answer). Checked: identical images,
//! one upstream GET per blob for 20 concurrent cold pulls (on the upstream's access log),
//! routing by `?ns=` and by a host prefix with two upstreams, an unknown host refused, a warm
//! cache served with the upstream down, pushes refused, and Docker Hub's token flow against
//! distribution with `auth.token` and a token issuer of the test's own.

use dockyard_testkit as common;

#[path = "mirror/cache.rs"]
mod cache;
#[path = "mirror/failures.rs"]
mod failures;
#[path = "mirror/pulls.rs"]
mod pulls;
#[path = "mirror/token_issuer.rs"]
mod token_issuer;

use std::process::Command;
use std::thread;

use common::containerd::{Containerd, assert_pulled};
use common::mirror::{blob_gets, mirror, seed};
use common::oci::{assert_same_image, write_oci_layout};
use common::registry::skopeo_copy;
use common::{Server, Target, http, run};
use tempfile::TempDir;

/// A distribution 2.8.2 upstream that requires `mirror:mirror-pass`.
fn distribution_with_auth(dir: &TempDir) -> Server {
    let htpasswd = dir.path().join("htpasswd");
    let line = run(Command::new("htpasswd").args(["-Bbn", "-C", "5", "mirror", "mirror-pass"]));
    std::fs::write(&htpasswd, line.trim()).unwrap();
    Server::builder()
        .target(Target::Distribution)
        .env("REGISTRY_AUTH", "htpasswd")
        .env("REGISTRY_AUTH_HTPASSWD_REALM", "upstream")
        .env(
            "REGISTRY_AUTH_HTPASSWD_PATH",
            &htpasswd.display().to_string(),
        )
        .start()
}

/// A loopback address with a free port.
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Bytes under the mirror's blob store, and whether `digest`'s bytes are there.
fn stored(data: &std::path::Path, digest: &str) -> (u64, bool) {
    fn walk(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p)
                    } else {
                        e.metadata().map_or(0, |m| m.len())
                    }
                })
                .sum()
        })
    }
    let blobs = data.join("docker/registry/v2/blobs");
    let hex = digest.trim_start_matches("sha256:");
    let there = blobs
        .join(format!("sha256/{}/{hex}/data", &hex[..2]))
        .exists();
    (walk(&blobs), there)
}

/// Polls `check` every 200 ms for up to 10 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        thread::sleep(std::time::Duration::from_millis(200));
    }
}
