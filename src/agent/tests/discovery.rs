//! Discovery: containerd 1.x / 2.x / 3.x configs, unset and colon-separated config_path,
//! imports, and a whole node on a temp dir (containerd, k3s with registries.yaml, CRI-O, Docker).

use std::path::PathBuf;

use super::*;
use crate::agent::discover::containerd_config_path;
use crate::agent::{Layout, discover};

fn no_imports(_: &str) -> Vec<(String, String)> {
    Vec::new()
}

fn path_of(text: &str) -> Result<PathBuf, String> {
    containerd_config_path("/etc/containerd/config.toml", text, &no_imports)
}

#[test]
fn config_path_is_read_from_each_config_version() {
    let v1 = "[plugins.cri.registry]\n  config_path = \"/etc/containerd/certs.d\"\n";
    let v1_long = "[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/a\"\n";
    let v2 = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n";
    let v3 = "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = '/etc/containerd/certs.d'\n";
    assert_eq!(path_of(v1), Ok("/etc/containerd/certs.d".into()));
    assert_eq!(path_of(v1_long), Ok("/a".into()));
    assert_eq!(path_of(v2), Ok("/etc/containerd/certs.d".into()));
    assert_eq!(path_of(v3), Ok("/etc/containerd/certs.d".into()));
    // A version-2 section in a version-3 file is not what containerd 2.x reads.
    let wrong =
        "version = 3\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/x\"\n";
    let e = path_of(wrong).unwrap_err();
    assert!(e.contains("sets no registry config_path"), "{e}");
    assert!(
        e.contains("[plugins.\"io.containerd.cri.v1.images\".registry]"),
        "{e}"
    );
}

#[test]
fn unset_empty_colon_separated_and_broken_config_paths_say_what_to_write() {
    let e = path_of("version = 2\n").unwrap_err();
    assert_eq!(
        e,
        "containerd's /etc/containerd/config.toml sets no registry config_path, so containerd ignores hosts.toml files: set `config_path = \"/etc/containerd/certs.d\"` under `[plugins.\"io.containerd.grpc.v1.cri\".registry]` in /etc/containerd/config.toml and restart containerd once (Dockyard never edits containerd's config)"
    );
    let e = path_of(
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"\"\n",
    )
    .unwrap_err();
    assert!(e.contains("is empty"), "{e}");
    let e = path_of("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/containerd/certs.d:/etc/docker/certs.d\"\n").unwrap_err();
    assert!(
        e.contains("lists several directories") && e.contains("containerd#12415"),
        "{e}"
    );
    let e = path_of("version = 2\n[plugins\n").unwrap_err();
    assert!(e.contains("is not valid TOML"), "{e}");
}

#[test]
fn an_import_sets_config_path_over_the_main_file() {
    let main = "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/main\"\n";
    let imports = |pattern: &str| {
        assert_eq!(pattern, "/etc/containerd/conf.d/*.toml");
        vec![(
            "/etc/containerd/conf.d/10-registry.toml".to_owned(),
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/imported\"\n".to_owned(),
        )]
    };
    assert_eq!(
        containerd_config_path("/etc/containerd/config.toml", main, &imports),
        Ok("/imported".into())
    );
}

#[test]
fn a_whole_node_is_discovered_under_its_host_root() {
    let root = tempfile::tempdir().unwrap();
    let put = |p: &str, text: &str| {
        let path = root.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    put(
        "etc/containerd/config.toml",
        "version = 2\nimports = [\"conf.d/*.toml\"]\n",
    );
    put(
        "etc/containerd/conf.d/50-reg.toml",
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/containerd/certs.d\"\n",
    );
    put(
        "var/lib/rancher/k3s/agent/etc/containerd/config.toml",
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/var/lib/rancher/k3s/agent/etc/containerd/certs.d\"\n",
    );
    put(
        "etc/rancher/k3s/registries.yaml",
        "mirrors:\n  docker.io:\n    endpoint: [\"https://m\"]\n",
    );
    put("etc/containers/registries.conf", "");
    put("etc/docker/daemon.json", "{\"debug\": true}");
    put("run/docker.sock", "");
    let d = discover(&Layout::node(root.path()));
    assert_eq!(d.containerd.len(), 2);
    assert_eq!(d.containerd[0].flavor, Flavor::Containerd);
    assert_eq!(
        d.containerd[0].config_path,
        Ok("/etc/containerd/certs.d".into())
    );
    assert_eq!(d.containerd[1].flavor, Flavor::K3s);
    assert_eq!(
        d.containerd[1].config_path,
        Ok("/var/lib/rancher/k3s/agent/etc/containerd/certs.d".into())
    );
    assert_eq!(
        d.containerd[1].managed_hosts.keys().collect::<Vec<_>>(),
        ["docker.io"]
    );
    assert_eq!(
        d.crio.as_ref().unwrap().dropin_dir,
        PathBuf::from("/etc/containers/registries.conf.d")
    );
    assert_eq!(
        d.docker.as_ref().unwrap().daemon_json_text.as_deref(),
        Some("{\"debug\": true}")
    );
    assert!(d.problems.is_empty(), "{:?}", d.problems);

    // Nothing installed: nothing found, nothing reported.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(discover(&Layout::node(empty.path())), Discovered::default());
}

#[test]
fn a_leftover_etc_docker_is_no_docker_and_an_unreadable_dockerd_is_left_alone() {
    let root = tempfile::tempdir().unwrap();
    let put = |p: &str, text: &str| {
        let path = root.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    put("etc/docker/daemon.json", "{}");
    let layout = Layout::node(root.path());
    let d = discover(&layout);
    assert!(d.docker.is_none(), "no dockerd runs: {d:?}");
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    // A pid file whose process this agent cannot see as dockerd (no host PID namespace).
    put("var/run/docker.pid", &format!("{}\n", std::process::id()));
    let d = discover(&layout);
    assert!(d.docker.is_none(), "{d:?}");
    assert!(
        d.problems[0].contains("cannot read its command line"),
        "{:?}",
        d.problems
    );
}
