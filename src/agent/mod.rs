//! The node agent's library: makes this node's container runtimes pull through Dockyard
//! mirrors and trust Dockyard registries, without restarting anything and without touching
//! anyone else's files. The Kubernetes side (`dockyard node-agent`'s watch loop) turns the
//! RegistryMirrors and Registries that select this node into [`Entry`]s and calls [`sync`];
//! nothing else here talks to the API server.
//!
//! The pipeline, one module per step:
//! - [`discover()`] (IO, read-only): which runtimes are on the node and where they read registry
//!   config: containerd's `config_path` (1.x `plugins."io.containerd.grpc.v1.cri"`, 2.x
//!   `plugins."io.containerd.cri.v1.images"`, its `imports`), k3s / rke2 and the hosts their
//!   `registries.yaml` manages, CRI-O's `registries.conf.d`, Docker's `daemon.json`.
//! - [`render()`] (pure): the files Dockyard wants (containerd `hosts.toml` + CA per host, one
//!   CRI-O drop-in `50-dockyard.conf` + CAs under `certs.d`, Docker CAs) and the values it wants
//!   in `daemon.json`, with a sentence per problem saying how to fix it.
//! - [`sync`] (IO): writes atomically what changed, removes what no resource wants any more,
//!   merges `daemon.json`, signals dockerd / CRI-O when asked, and returns a [`Report`].
//!
//! Ownership: the agent records every file it wrote (with its hash), every directory it
//! created and every `daemon.json` value it added in `<state_dir>/state.json`, and marks the
//! files whose format allows a comment. It never overwrites or deletes a file it did not
//! write (a conflict is reported), and a file it wrote that someone edited since is left
//! alone and reported (it is theirs now). A `daemon.json` value that was already there is
//! neither added again nor ever removed.
//!
//! ```text
//! sync(layout, entries)
//!   discover(layout) -> Discovered          what runtimes, where their config lives
//!   render(entries, &discovered) -> Rendered    pure: files, daemon.json values, problems
//!   apply (files.rs, docker.rs merge)       atomic writes, exact removal, reloads
//!   -> Report { per_owner, node_problems, changed }
//! ```

mod apply;
mod containerd;
mod crio;
mod discover;
mod docker;
mod host;
mod jsonedit;
mod k3s;
mod render;
pub mod run;
mod state;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub use apply::sync;
pub use discover::{ContainerdTarget, CrioTarget, Discovered, DockerTarget, Flavor, discover};
pub use docker::{DaemonJsonEdit, merge_daemon_json};
pub use host::validate_host;
pub use render::{FileSpec, Rendered, render};

/// A container runtime the agent configures (the resources' `nodes.runtimes`).
pub use crate::operator::crd::Runtime;

/// What one resource asks of this node for one registry host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Who asks, e.g. `RegistryMirror/ns/name`: keys the report and marks ownership.
    pub owner: String,
    /// The registry host as image names spell it: `docker.io`, `ghcr.io`, `upstream.test:5000`.
    pub host: String,
    /// The upstream base URL, kept as containerd's `server` (the fallback); None derives it
    /// (`docker.io` -> `https://registry-1.docker.io`, else `https://<host>`).
    pub server: Option<String>,
    /// The Dockyard mirror tried first; None for a Registry's trust entry (the CA is then for
    /// `host` itself).
    pub mirror: Option<Endpoint>,
    /// PEM CA certificate(s) signing the mirror's (or the registry's) serving certificate.
    pub ca_pem: Option<String>,
    /// The runtimes to configure (the others are left alone).
    pub runtimes: BTreeSet<Runtime>,
    /// Keep the upstream as a fallback (the default). `false` makes the mirror the only
    /// source: containerd's `server` becomes the mirror, CRI-O's `location` becomes the
    /// mirror's path; Docker's `registry-mirrors` always falls back, which is reported.
    pub fallback: bool,
}

/// A mirror's address as node processes reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://10.96.0.50:5000` or `http://10.96.0.50:5000`: scheme and authority, no path.
    pub url: String,
    /// Plain HTTP, or HTTPS without verifying the certificate.
    pub insecure: bool,
}

/// Where this node's runtimes keep their config. Every path is the path *on the node*
/// (what goes into `hosts.toml`'s `ca = ...`); the agent reads and writes it under
/// `host_root` (`/` on the node itself, `/host` in a pod with the node's root mounted there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub host_root: PathBuf,
    /// containerd's main config (`/etc/containerd/config.toml`).
    pub containerd_config: PathBuf,
    /// containerd's socket: containerd counts as present when it or the config exists.
    pub containerd_socket: PathBuf,
    /// k3s and rke2 keep their own containerd config and `registries.yaml`; `/` looks in the
    /// standard places (`/var/lib/rancher/<k3s|rke2>/...`, `/etc/rancher/<k3s|rke2>/...`).
    pub rancher_root: PathBuf,
    /// containers/image drop-ins (`/etc/containers/registries.conf.d`); CRI-O counts as
    /// present when its parent directory exists.
    pub crio_dropin_dir: PathBuf,
    /// containers/image per-registry certificates (`/etc/containers/certs.d`).
    pub crio_certs_dir: PathBuf,
    /// CRI-O's pid file, for SIGHUP (`/var/run/crio/crio.pid`).
    pub crio_pid_file: PathBuf,
    /// `/etc/docker/daemon.json`; Docker counts as present when its directory exists and
    /// dockerd runs.
    pub docker_daemon_json: PathBuf,
    /// `/etc/docker/certs.d`.
    pub docker_certs_dir: PathBuf,
    /// dockerd's pid file (`/var/run/docker.pid`), for SIGHUP and its command-line flags.
    pub docker_pid_file: PathBuf,
    /// dockerd's socket (`/run/docker.sock`): with the pid file, how a running dockerd is
    /// told from a leftover `/etc/docker`.
    pub docker_socket: PathBuf,
    /// Where the agent keeps its ownership record (`/var/lib/dockyard/node-agent`).
    pub state_dir: PathBuf,
    /// SIGHUP dockerd after `daemon.json` changed (it re-reads mirrors and insecure registries).
    pub reload_docker: bool,
    /// SIGHUP CRI-O after its drop-in changed (it re-reads registries.conf).
    pub reload_crio: bool,
}

impl Layout {
    /// The standard locations on a node whose root is at `host_root`; reloads on.
    pub fn node(host_root: impl Into<PathBuf>) -> Layout {
        Layout {
            host_root: host_root.into(),
            containerd_config: "/etc/containerd/config.toml".into(),
            containerd_socket: "/run/containerd/containerd.sock".into(),
            rancher_root: "/".into(),
            crio_dropin_dir: "/etc/containers/registries.conf.d".into(),
            crio_certs_dir: "/etc/containers/certs.d".into(),
            crio_pid_file: "/var/run/crio/crio.pid".into(),
            docker_daemon_json: "/etc/docker/daemon.json".into(),
            docker_certs_dir: "/etc/docker/certs.d".into(),
            docker_pid_file: "/var/run/docker.pid".into(),
            docker_socket: "/run/docker.sock".into(),
            state_dir: "/var/lib/dockyard/node-agent".into(),
            reload_docker: true,
            reload_crio: true,
        }
    }

    /// Where the agent reads and writes the node path `node_path`.
    pub fn on_host(&self, node_path: &Path) -> PathBuf {
        let relative = node_path.strip_prefix("/").unwrap_or(node_path);
        self.host_root.join(relative)
    }
}

/// The outcome of one [`sync`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// One per owner in the entries given.
    pub per_owner: BTreeMap<String, OwnerReport>,
    /// Problems of the node rather than of one resource (containerd without `config_path`,
    /// an unreadable `daemon.json`, ...), each saying how to fix it.
    pub node_problems: Vec<String>,
    /// Whether anything on the node changed (a file written or removed, a reload sent).
    pub changed: bool,
}

/// How one owner's entries fared on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerReport {
    /// Every runtime it asked for that is on this node carries its config now, and nothing
    /// went wrong (`problems` is empty).
    pub configured: bool,
    /// Human sentences, each saying what to do.
    pub problems: Vec<String>,
}
