//! Unit tests of the agent: each renderer against whole expected files, discovery of
//! containerd configs, hostile input, the daemon.json merge (with a property test), and the
//! filesystem behaviour of `sync` on a temp-dir node.

mod discovery;
mod files;
mod merge;
mod renderers;

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::discover::{ContainerdTarget, CrioTarget, Discovered, DockerTarget, Flavor};
use super::{Endpoint, Entry, Runtime};

pub(super) const PEM: &str =
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUY2E=\n-----END CERTIFICATE-----\n";

pub(super) fn all_runtimes() -> BTreeSet<Runtime> {
    [Runtime::Containerd, Runtime::Crio, Runtime::Docker].into()
}

/// A mirror entry for `host` through `mirror_url`.
pub(super) fn mirror(owner: &str, host: &str, mirror_url: &str, ca: bool) -> Entry {
    Entry {
        owner: owner.into(),
        host: host.into(),
        server: None,
        mirror: Some(Endpoint {
            url: mirror_url.into(),
            insecure: false,
        }),
        ca_pem: ca.then(|| PEM.to_owned()),
        runtimes: all_runtimes(),
        fallback: true,
    }
}

/// A node with a plain containerd (config_path /etc/containerd/certs.d), CRI-O and Docker
/// (daemon.json with `daemon_json`).
pub(super) fn node(daemon_json: Option<&str>) -> Discovered {
    Discovered {
        containerd: vec![ContainerdTarget {
            flavor: Flavor::Containerd,
            config_file: "/etc/containerd/config.toml".into(),
            config_path: Ok(PathBuf::from("/etc/containerd/certs.d")),
            managed_hosts: Default::default(),
        }],
        crio: Some(CrioTarget {
            dropin_dir: "/etc/containers/registries.conf.d".into(),
            certs_dir: "/etc/containers/certs.d".into(),
            user_prefixes: Default::default(),
        }),
        docker: Some(DockerTarget {
            daemon_json: "/etc/docker/daemon.json".into(),
            daemon_json_text: daemon_json.map(str::to_owned),
            certs_dir: "/etc/docker/certs.d".into(),
            flag_keys: Default::default(),
        }),
        problems: Vec::new(),
    }
}

pub(super) const MARK_HUB: &str = "# Managed by the Dockyard node agent for RegistryMirror/ns/hub.\n# Dockyard rewrites or removes this file as those resources change; once edited by\n# anyone else, it is left alone (and reported).\n";

pub(super) const CA_FILE: &str = "# Managed by the Dockyard node agent: the CA of a Dockyard registry or mirror.\n# Dockyard rewrites or removes this file; once edited by anyone else, it is left alone.\n-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUY2E=\n-----END CERTIFICATE-----\n";
