//! `sync` on a temp-dir node: what lands on disk, idempotence, foreign and edited files left
//! alone, exact removal, and recovery from a killed write.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;
use crate::agent::{Layout, sync};

const CONFIG: &str = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n";
const DAEMON: &str =
    "{\n  \"log-driver\": \"journald\",\n  \"registry-mirrors\": [\"https://theirs.example\"]\n}\n";

/// A node with containerd, CRI-O's /etc/containers and a user's daemon.json; reloads off.
fn node_dir() -> (tempfile::TempDir, Layout) {
    let root = tempfile::tempdir().unwrap();
    let put = |p: &str, text: &str| {
        let path = root.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    put("etc/containerd/config.toml", CONFIG);
    put(
        "etc/containers/registries.conf",
        "unqualified-search-registries = [\"docker.io\"]\n",
    );
    put("etc/docker/daemon.json", DAEMON);
    put("run/docker.sock", "");
    let mut layout = Layout::node(root.path());
    layout.reload_crio = false;
    layout.reload_docker = false;
    (root, layout)
}

/// Every file under the node but the agent's state: path -> bytes.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().to_path_buf();
            if rel.starts_with("var") {
                continue;
            }
            if p.is_dir() {
                out.insert(rel.join(""), Vec::new());
                walk(base, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn hub() -> Entry {
    mirror(
        "RegistryMirror/ns/hub",
        "docker.io",
        "https://10.96.0.50:5000",
        true,
    )
}

fn quay() -> Entry {
    mirror(
        "RegistryMirror/ns/quay",
        "quay.io",
        "http://10.96.0.51:5000",
        false,
    )
}

fn read(root: &Path, p: &str) -> String {
    std::fs::read_to_string(root.join(p)).unwrap()
}

#[test]
fn sync_writes_the_files_once_and_a_second_sync_changes_nothing() {
    let (root, layout) = node_dir();
    let before = snapshot(root.path());
    let report = sync(&layout, &[hub(), quay()]);
    assert!(report.changed);
    assert!(
        report.node_problems.is_empty(),
        "{:?}",
        report.node_problems
    );
    assert!(
        report.per_owner["RegistryMirror/ns/hub"].configured,
        "{report:?}"
    );
    assert!(
        report.per_owner["RegistryMirror/ns/quay"].problems[0]
            .contains("Docker mirrors only Docker Hub")
    );
    let hosts = root
        .path()
        .join("etc/containerd/certs.d/docker.io/hosts.toml");
    assert!(
        read(root.path(), "etc/containerd/certs.d/docker.io/hosts.toml")
            .contains("[host.\"https://10.96.0.50:5000\"]")
    );
    assert_eq!(
        std::fs::metadata(&hosts).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert!(
        read(
            root.path(),
            "etc/containers/registries.conf.d/50-dockyard.conf"
        )
        .contains("location = \"10.96.0.51:5000/quay.io\"")
    );
    assert_eq!(
        read(
            root.path(),
            "etc/docker/certs.d/10.96.0.50:5000/dockyard-ca.crt"
        ),
        CA_FILE
    );
    assert_eq!(
        read(root.path(), "etc/docker/daemon.json"),
        "{\n  \"log-driver\": \"journald\",\n  \"registry-mirrors\": [\"https://theirs.example\", \"https://10.96.0.50:5000\"]\n}\n"
    );

    let written = snapshot(root.path());
    let inode = std::fs::metadata(&hosts).unwrap().ino();
    let again = sync(&layout, &[quay(), hub()]);
    assert!(!again.changed, "{again:?}");
    assert_eq!(snapshot(root.path()), written);
    assert_eq!(std::fs::metadata(&hosts).unwrap().ino(), inode, "rewritten");

    // Everything removed: the node is byte for byte what it was (daemon.json's keys that
    // Dockyard created go one sync after their values).
    let removed = sync(&layout, &[]);
    assert!(removed.changed);
    sync(&layout, &[]);
    assert_eq!(snapshot(root.path()), before);
    assert!(!sync(&layout, &[]).changed);
}

#[test]
fn an_owner_that_goes_takes_exactly_its_own_files_and_values() {
    let (root, layout) = node_dir();
    let mut trust = mirror("Registry/team/reg", "10.96.0.12:5000", "https://x", true);
    trust.mirror = None;
    sync(&layout, &[hub(), quay(), trust.clone()]);
    // Someone else puts a file into a directory Dockyard created.
    std::fs::write(
        root.path()
            .join("etc/docker/certs.d/10.96.0.50:5000/client.cert"),
        "theirs",
    )
    .unwrap();
    let with_quay_and_trust = {
        let (r2, l2) = node_dir();
        sync(&l2, &[quay(), trust.clone()]);
        let mut s = snapshot(r2.path());
        s.insert("etc/docker/certs.d/10.96.0.50:5000/".into(), Vec::new());
        s.insert(
            "etc/docker/certs.d/10.96.0.50:5000/client.cert".into(),
            b"theirs".to_vec(),
        );
        s
    };
    let report = sync(&layout, &[quay(), trust]);
    assert!(report.changed);
    assert_eq!(snapshot(root.path()), with_quay_and_trust);
    assert!(
        !root
            .path()
            .join("etc/containerd/certs.d/docker.io")
            .exists()
    );
    assert_eq!(read(root.path(), "etc/docker/daemon.json"), DAEMON);
    assert_eq!(
        read(
            root.path(),
            "etc/docker/certs.d/10.96.0.50:5000/client.cert"
        ),
        "theirs"
    );
    assert!(
        !root
            .path()
            .join("etc/docker/certs.d/10.96.0.50:5000/dockyard-ca.crt")
            .exists()
    );
}

#[test]
fn foreign_files_are_reported_and_never_touched() {
    let (root, layout) = node_dir();
    let theirs = "server = \"https://registry-1.docker.io\"\n[host.\"https://their-mirror\"]\n";
    let dir = root.path().join("etc/containerd/certs.d/docker.io");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hosts.toml"), theirs).unwrap();
    let report = sync(&layout, &[hub()]);
    let problems = &report.per_owner["RegistryMirror/ns/hub"].problems;
    assert!(!report.per_owner["RegistryMirror/ns/hub"].configured);
    assert!(
        problems.iter().any(|p| p.contains(
            "/etc/containerd/certs.d/docker.io/hosts.toml exists and was not written by Dockyard"
        )),
        "{problems:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("hosts.toml")).unwrap(),
        theirs
    );
    // Its CA file is not written into their directory either; other runtimes are configured.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    assert!(
        root.path()
            .join("etc/containers/registries.conf.d/50-dockyard.conf")
            .exists()
    );
    sync(&layout, &[]);
    assert_eq!(
        std::fs::read_to_string(dir.join("hosts.toml")).unwrap(),
        theirs
    );
}

#[test]
fn a_containerd_host_dir_with_someone_elses_certificates_gets_no_hosts_toml() {
    let (root, layout) = node_dir();
    // docker-style certs.d content, which containerd reads only while there is no hosts.toml.
    let dir = root.path().join("etc/containerd/certs.d/docker.io");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.crt"), "their CA").unwrap();
    let report = sync(&layout, &[hub()]);
    let problems = &report.per_owner["RegistryMirror/ns/hub"].problems;
    assert!(
        problems.iter().any(|p| p.contains(
            "/docker.io/ca.crt, which containerd reads only while the directory has no hosts.toml"
        )),
        "{problems:?}"
    );
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["ca.crt"]);
}

#[test]
fn a_file_edited_since_dockyard_wrote_it_is_left_alone_and_reported() {
    let (root, layout) = node_dir();
    sync(&layout, &[hub()]);
    let path = root
        .path()
        .join("etc/containerd/certs.d/docker.io/hosts.toml");
    let edited = format!("{}\n# my change\n", std::fs::read_to_string(&path).unwrap());
    std::fs::write(&path, &edited).unwrap();
    let mut changed = hub();
    changed.mirror = Some(Endpoint {
        url: "https://10.96.0.99:5000".into(),
        insecure: false,
    });
    let report = sync(&layout, &[changed]);
    assert!(
        report.per_owner["RegistryMirror/ns/hub"]
            .problems
            .iter()
            .any(|p| p.contains("was edited since Dockyard wrote it")),
        "{report:?}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), edited);
    let report = sync(&layout, &[]);
    assert!(
        report
            .node_problems
            .iter()
            .any(|p| p.contains("is yours now")),
        "{report:?}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), edited);
    // Deleting the edited file hands it back to Dockyard.
    std::fs::remove_file(&path).unwrap();
    let report = sync(&layout, &[hub()]);
    assert!(
        report.per_owner["RegistryMirror/ns/hub"].configured,
        "{report:?}"
    );
}

#[test]
fn a_killed_write_leaves_the_target_intact_and_the_next_sync_recovers() {
    let (root, layout) = node_dir();
    sync(&layout, &[hub()]);
    let dir = root.path().join("etc/containerd/certs.d/docker.io");
    let good = std::fs::read_to_string(dir.join("hosts.toml")).unwrap();
    // A write killed before its rename leaves only its temp file, never a partial target.
    let leftover = dir.join(".dockyard-agent-tmp-0b6d7c1e-killed");
    std::fs::write(&leftover, "server = \"https://regis").unwrap();
    // A sync killed after writing but before saving its record: the record knows the
    // directories (saved before they are made) but not the files.
    let record = root.path().join("var/lib/dockyard/node-agent/state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    state["files"] = serde_json::json!({});
    std::fs::write(&record, serde_json::to_vec(&state).unwrap()).unwrap();
    let report = sync(&layout, &[hub()]);
    assert!(
        report.per_owner["RegistryMirror/ns/hub"].configured,
        "{report:?}"
    );
    assert!(!report.changed);
    assert!(!leftover.exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("hosts.toml")).unwrap(),
        good
    );
    // The adopted files are Dockyard's again: removal takes them.
    sync(&layout, &[]);
    assert!(!dir.exists());
}

#[test]
fn a_damaged_record_stops_every_change() {
    let (root, layout) = node_dir();
    sync(&layout, &[hub()]);
    std::fs::write(
        root.path().join("var/lib/dockyard/node-agent/state.json"),
        "{garbage",
    )
    .unwrap();
    let before = snapshot(root.path());
    let report = sync(&layout, &[]);
    assert!(!report.changed);
    assert!(report.node_problems[0].contains("is damaged"), "{report:?}");
    assert_eq!(snapshot(root.path()), before);
    // A resource that asks for something meanwhile is not reported as configured.
    let report = sync(&layout, &[hub()]);
    let own = &report.per_owner["RegistryMirror/ns/hub"];
    assert!(!own.configured, "{report:?}");
    assert!(
        own.problems.iter().any(|p| p.contains("is damaged")),
        "{report:?}"
    );
    assert_eq!(snapshot(root.path()), before);
}

#[test]
fn an_invalid_daemon_json_is_reported_and_kept() {
    let (root, layout) = node_dir();
    std::fs::write(
        root.path().join("etc/docker/daemon.json"),
        "{\"debug\": true,,}",
    )
    .unwrap();
    let report = sync(&layout, &[hub()]);
    assert!(
        report
            .node_problems
            .iter()
            .any(|p| p.contains("daemon.json is not valid JSON")),
        "{report:?}"
    );
    assert_eq!(
        read(root.path(), "etc/docker/daemon.json"),
        "{\"debug\": true,,}"
    );
    assert!(!report.per_owner["RegistryMirror/ns/hub"].configured);
}
