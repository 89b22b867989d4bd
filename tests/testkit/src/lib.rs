//! Shared helpers for Dockyard's black-box integration tests (`tests/*.rs`): a guard that runs
//! a registry (Dockyard or the reference distribution 2.8.2) on loopback, a headless chromium
//! driven over WebDriver (`browser`), a raw HTTP/1.1 probe
//! and the blob upload protocol by hand, a round-robin balancer over registry replicas,
//! runners for real client programs (with private podman storage and a private containerd),
//! the OCI conformance runners, an OCI image layout writer, and a MinIO server (a real S3
//! engine). A library compiled once; each test crate says `use dockyard_testkit as common;`
//! and uses the parts it needs.

pub mod balancer;
pub mod browser;
pub mod cmd;
pub mod conformance;
pub mod containerd;
pub mod dockerd;
pub mod http;
pub mod kube;
pub mod minio;
pub mod mirror;
pub mod oci;
pub mod operator;
pub mod podman;
pub mod registry;
pub mod server;
pub mod upload;

pub use cmd::{cmd, run, run_capture, run_fail, tool};

/// The repository's root (where `.tools/` is).
pub fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `dockyard` binary of the test run: cargo builds it next to the test executables
/// (`target/<profile>/dockyard`, tests in `target/<profile>/deps/`).
pub fn dockyard_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps");
    let bin = profile.join("dockyard");
    assert!(bin.is_file(), "no dockyard binary at {}", bin.display());
    bin
}
pub use http::http_get;
pub use server::{Server, Target};
