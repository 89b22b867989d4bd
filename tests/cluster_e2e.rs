//! End to end on a real single-node Kubernetes with a real kubelet (`tests/cluster/`): the
//! chart installed with `helm` and the image built from the binary under test, Registries
//! applied with kubectl, and real clients (skopeo) pushing and pulling through the Service's
//! ClusterIP from the host over TLS, with the credentials the operator generated. What each
//! test asserts is what a user sees: pods that run, objects and conditions in the API server,
//! images that survive restarts, and status codes. The same image also runs the registry:2 way
//! on a Docker engine, with the README's `docker run` line and `compose.yaml`.

use dockyard_testkit as common;

#[path = "cluster_e2e/docker.rs"]
mod docker;
#[path = "cluster_e2e/fixture.rs"]
mod fixture;
#[path = "cluster_e2e/install.rs"]
mod install;
#[path = "cluster_e2e/mirror.rs"]
mod mirror;
#[path = "cluster_e2e/registry.rs"]
mod registry;
#[path = "cluster_e2e/s3.rs"]
mod s3;
#[path = "cluster_e2e/status.rs"]
mod status;
