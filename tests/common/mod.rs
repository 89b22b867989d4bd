//! Shared helpers for Dockyard's black-box integration tests (`tests/*.rs`): a guard that runs
//! a registry (Dockyard or the reference distribution 2.8.2) on loopback, a raw HTTP/1.1 probe,
//! runners for real client programs (with private podman storage and a private containerd),
//! the OCI conformance runners, and an OCI image layout writer. Each test crate declares
//! `mod common;` and uses the parts it needs.

pub mod cmd;
pub mod conformance;
pub mod containerd;
pub mod http;
pub mod kube;
pub mod oci;
pub mod operator;
pub mod podman;
pub mod registry;
pub mod server;

pub use cmd::{cmd, run, run_capture, run_fail, tool};
pub use http::http_get;
pub use server::{Server, Target};
