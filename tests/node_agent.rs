//! The node agent's `sync` against real runtimes, outside any cluster: containerd 1.6 pulls
//! through the hosts.toml it wrote (a Dockyard mirror over HTTPS, trusted through the CA file
//! it wrote) and falls back to the upstream when the mirror dies; podman (containers/image,
//! CRI-O's library) pulls through its registries.conf.d drop-in; dockerd, reloaded by the
//! agent's SIGHUP, pulls Docker Hub names through `registry-mirrors`, and the user's own
//! daemon.json keys survive the merge and the removal. Everything runs on loopback.

use dockyard_testkit as common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::containerd::{Containerd, assert_pulled};
use common::mirror::{blob_gets, mirror, seed};
use common::oci::write_oci_layout;
use common::registry::skopeo_copy;
use common::{Server, Target, run};
use dockyard::agent::{Endpoint, Entry, Layout, Report, Runtime, sync};
use tempfile::TempDir;

/// A node whose every runtime file lives under `dir` (paths are absolute, so `host_root` is
/// `/` and the paths written into hosts.toml are real); no runtime is present until the test
/// creates its directory. Reloads off.
fn node_layout(dir: &Path) -> Layout {
    let mut l = Layout::node("/");
    l.containerd_config = dir.join("etc/containerd/config.toml");
    l.containerd_socket = dir.join("no-containerd.sock");
    l.rancher_root = dir.join("no-rancher");
    l.crio_dropin_dir = dir.join("containers/registries.conf.d");
    l.crio_certs_dir = dir.join("containers/certs.d");
    l.crio_pid_file = dir.join("crio.pid");
    l.docker_daemon_json = dir.join("docker/daemon.json");
    l.docker_certs_dir = dir.join("docker/certs.d");
    l.docker_pid_file = dir.join("docker/pid");
    l.state_dir = dir.join("state");
    l.reload_crio = false;
    l.reload_docker = false;
    l
}

fn entry(owner: &str, host: &str, mirror_url: &str, runtimes: &[Runtime]) -> Entry {
    Entry {
        owner: owner.into(),
        host: host.into(),
        server: None,
        mirror: Some(Endpoint {
            url: mirror_url.into(),
            insecure: false,
        }),
        ca_pem: None,
        runtimes: runtimes.iter().copied().collect::<BTreeSet<_>>(),
        fallback: true,
    }
}

fn assert_configured(report: &Report, owner: &str) {
    assert!(report.node_problems.is_empty(), "{report:#?}");
    assert!(report.per_owner[owner].configured, "{report:#?}");
}

/// A CA and a certificate it signed for 127.0.0.1, as files for the mirror: (CA PEM, cert
/// path, key path).
fn loopback_tls(dir: &Path) -> (String, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "node-agent test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &Issuer::from_params(&ca, &ca_key))
        .unwrap();
    let (cert_path, key_path) = (dir.join("mirror.crt"), dir.join("mirror.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca_pem, cert_path, key_path)
}

#[test]
fn containerd_pulls_through_the_hosts_toml_sync_wrote_and_falls_back_when_the_mirror_dies() {
    let dir = TempDir::new().unwrap();
    let upstream = Server::builder().target(Target::Distribution).start();
    let v1 = seed(
        &upstream,
        &dir.path().join("l1"),
        "a",
        &[300_000, 2000],
        "library/app",
        &[],
    );
    let l2 = dir.path().join("l2");
    let v2 = write_oci_layout(&l2, "b", &[250_000]);
    let at_upstream = format!("docker://{}/library/app:v2", upstream.addr);
    skopeo_copy(&[], &format!("oci:{}:b", l2.display()), &at_upstream);

    // The mirror, over HTTPS with a CA of the test's own, in front of the upstream.
    let (ca_pem, cert, key) = loopback_tls(dir.path());
    let config = dir.path().join("mirror.yml");
    let upstream_host = "upstream.test:5000";
    std::fs::write(
        &config,
        format!("version: 0.1\nproxy:\n  upstreams:\n  - host: {upstream_host}\n    urls: [http://{}]\n", upstream.addr),
    )
    .unwrap();
    let mut mirror = Server::builder()
        .target(Target::Dockyard)
        .https()
        .env("DOCKYARD_CONFIG", &config.display().to_string())
        .env("REGISTRY_HTTP_TLS_CERTIFICATE", &cert.display().to_string())
        .env("REGISTRY_HTTP_TLS_KEY", &key.display().to_string())
        .start();

    // The node: containerd 1.6's config with config_path, as a kubeadm node has it.
    let node = dir.path().join("node");
    let certs_d = node.join("etc/containerd/certs.d");
    std::fs::create_dir_all(node.join("etc/containerd")).unwrap();
    let containerd_config = format!(
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"{}\"\n",
        certs_d.display()
    );
    std::fs::write(node.join("etc/containerd/config.toml"), &containerd_config).unwrap();
    let layout = node_layout(&node);
    let mut wanted = entry(
        "RegistryMirror/ns/up",
        upstream_host,
        &format!("https://{}", mirror.addr),
        &[Runtime::Containerd],
    );
    wanted.server = Some(format!("http://{}", upstream.addr));
    wanted.ca_pem = Some(ca_pem);
    let report = sync(&layout, std::slice::from_ref(&wanted));
    assert_configured(&report, "RegistryMirror/ns/up");
    let hosts_toml = certs_d.join(upstream_host).join("hosts.toml");
    assert!(hosts_toml.is_file(), "{report:#?}");

    let containerd = Containerd::start();
    let hosts_dir = certs_d.display().to_string();
    let pull = |tag: &str| {
        let name = format!("{upstream_host}/library/app:{tag}");
        run(&mut containerd.ctr(&["images", "pull", "--hosts-dir", &hosts_dir, &name]));
        name
    };
    let name = pull("v1");
    assert_pulled(&containerd, &name, &v1);
    // Through the mirror: it served every blob, and the upstream saw only the mirror.
    for digest in v1.layer_digests.iter().chain([&v1.config_digest]) {
        let served =
            mirror.access_lines("GET", &format!("/blobs/{digest}?ns=upstream.test%3A5000"));
        assert!(
            !served.is_empty(),
            "mirror did not serve {digest}:\n{}",
            mirror.log()
        );
    }
    assert_eq!(blob_gets(&upstream).len(), v1.layer_digests.len() + 1);
    assert!(
        !upstream.log().contains("containerd/"),
        "containerd went to the upstream itself:\n{}",
        upstream.log()
    );

    // The mirror dies: the next pull falls back to `server` at once (a refused connection).
    mirror.kill9();
    let started = Instant::now();
    let name = pull("v2");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "fallback took {:?}",
        started.elapsed()
    );
    assert_pulled(&containerd, &name, &v2);
    assert!(
        upstream.log().contains("containerd/"),
        "the fallback pulled from the upstream"
    );

    // The resource goes: exactly the agent's files go, containerd's config stays.
    assert!(!sync(&layout, &[wanted.clone()]).changed);
    let report = sync(&layout, &[]);
    assert!(report.changed);
    assert!(!certs_d.join(upstream_host).exists());
    assert_eq!(
        std::fs::read_to_string(node.join("etc/containerd/config.toml")).unwrap(),
        containerd_config
    );
}

/// Polls `check` every 200 ms for up to 20 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn podman_pulls_through_the_registries_conf_d_drop_in_sync_wrote() {
    let dir = TempDir::new().unwrap();
    let upstream = Server::builder().target(Target::Dockyard).start();
    let image = seed(
        &upstream,
        &dir.path().join("layout"),
        "podman",
        &[400_000, 3000],
        "team/app",
        &[],
    );
    // The upstream's host is its loopback address, so no name ever needs resolving.
    let host = upstream.addr.clone();
    let config = dir.path().join("mirror.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nproxy:\n  upstreams:\n  - host: \"{host}\"\n    urls: [http://{host}]\n"
        ),
    )
    .unwrap();
    let mirror = mirror(&[("DOCKYARD_CONFIG", &config.display().to_string())]);

    // containers/image reads registries.conf (CONTAINERS_REGISTRIES_CONF here), then the
    // drop-ins of /etc/containers/registries.conf.d, then those of
    // $HOME/.config/containers/registries.conf.d: the test's HOME holds the agent's drop-ins.
    let home = dir.path().join("home");
    let containers = home.join(".config/containers");
    std::fs::create_dir_all(&containers).unwrap();
    let registries = dir.path().join("registries.conf");
    std::fs::write(&registries, "unqualified-search-registries = []\n").unwrap();
    let mut layout = node_layout(&dir.path().join("node"));
    layout.crio_dropin_dir = containers.join("registries.conf.d");
    layout.crio_certs_dir = containers.join("certs.d");
    let wanted = entry(
        "RegistryMirror/ns/up",
        &host,
        &format!("http://{}", mirror.addr),
        &[Runtime::Crio],
    );
    let report = sync(&layout, std::slice::from_ref(&wanted));
    assert_configured(&report, "RegistryMirror/ns/up");
    let dropin = layout.crio_dropin_dir.join("50-dockyard.conf");
    assert!(dropin.is_file());

    let podman = |args: &[&str]| {
        let mut c = common::podman::isolated("podman", &dir.path().join("storage"));
        c.env("HOME", &home)
            .env("CONTAINERS_REGISTRIES_CONF", &registries)
            .args(args);
        run(&mut c)
    };
    let name = format!("{host}/team/app:v1");
    podman(&["pull", &name]);
    let digest = podman(&["image", "inspect", "--format", "{{.Digest}}", &name]);
    assert_eq!(digest.trim(), image.manifest_digest);
    // Asked under the path prefix Dockyard routes by, for the manifest and every blob.
    let prefix = format!("/v2/{}/team/app/", host.replace(':', "_"));
    assert!(
        !mirror
            .access_lines("GET", &format!("{prefix}manifests/"))
            .is_empty(),
        "{}",
        mirror.log()
    );
    for digest in image.layer_digests.iter().chain([&image.config_digest]) {
        let served = mirror.access_lines("GET", &format!("{prefix}blobs/{digest}"));
        assert!(
            !served.is_empty(),
            "mirror did not serve {digest}:\n{}",
            mirror.log()
        );
    }

    // The resource goes: the drop-in goes, and the directory the agent made for it.
    assert!(sync(&layout, &[]).changed);
    assert!(!layout.crio_dropin_dir.exists());
    assert!(containers.is_dir());
}

#[test]
fn dockerd_reloaded_by_sync_pulls_docker_hub_names_through_the_mirror_and_keeps_the_users_keys() {
    let dir = TempDir::new().unwrap();
    // A local registry stands in for Docker Hub behind the mirror (its default upstream).
    let hub = Server::builder().target(Target::Dockyard).start();
    seed(
        &hub,
        &dir.path().join("layout"),
        "dockerd",
        &[300_000, 2000],
        "library/app",
        &["--format", "v2s2"],
    );
    let mirror = mirror(&[("REGISTRY_PROXY_REMOTEURL", &format!("http://{}", hub.addr))]);

    let docker_dir = dir.path().join("docker");
    let engine = common::dockerd::Dockerd::start(
        &docker_dir,
        "\"log-level\": \"info\", \"max-concurrent-downloads\": 2",
    );
    let daemon_json = docker_dir.join("daemon.json");
    let original = std::fs::read_to_string(&daemon_json).unwrap();
    let mut layout = node_layout(&dir.path().join("node"));
    layout.docker_daemon_json = daemon_json.clone();
    layout.docker_pid_file = docker_dir.join("pid");
    layout.reload_docker = true;
    let mirror_url = format!("http://{}", mirror.addr);
    let wanted = entry(
        "RegistryMirror/ns/hub",
        "docker.io",
        &mirror_url,
        &[Runtime::Docker],
    );
    let mirrors =
        || run(&mut engine.docker(&["info", "--format", "{{json .RegistryConfig.Mirrors}}"]));
    assert!(!mirrors().contains(&mirror.addr));

    let report = sync(&layout, std::slice::from_ref(&wanted));
    assert_configured(&report, "RegistryMirror/ns/hub");
    assert!(report.changed);
    // The user's keys stay, in their order, and the mirror's values follow.
    let merged = std::fs::read_to_string(&daemon_json).unwrap();
    let kept = original.trim_end().strip_suffix('}').unwrap();
    assert_eq!(
        merged,
        format!(
            "{kept}, \"insecure-registries\": [\"{}\"], \"registry-mirrors\": [\"{mirror_url}\"]}}",
            mirror.addr
        )
    );
    eventually("dockerd reloaded the mirror on SIGHUP", || {
        mirrors().contains(&mirror.addr)
    });
    assert!(!sync(&layout, std::slice::from_ref(&wanted)).changed);

    run(&mut engine.docker(&["pull", "app:v1"]));
    assert!(
        !mirror
            .access_lines("HEAD", "/v2/library/app/manifests/v1")
            .is_empty(),
        "dockerd asked the mirror:\n{}\n{}",
        mirror.log(),
        engine.log()
    );
    assert!(
        !mirror
            .access_lines("GET", "/v2/library/app/blobs/")
            .is_empty()
    );

    // The resource goes: dockerd drops the mirror on the SIGHUP (its reload keeps the value
    // of a key absent from the file, so the keys Dockyard created are first left empty), and
    // the next sync gives the user's daemon.json back byte for byte.
    assert!(sync(&layout, &[]).changed);
    eventually("dockerd dropped the mirror", || {
        !mirrors().contains(&mirror.addr)
    });
    assert!(sync(&layout, &[]).changed);
    assert_eq!(std::fs::read_to_string(&daemon_json).unwrap(), original);
    assert!(!sync(&layout, &[]).changed);
    assert!(!mirrors().contains(&mirror.addr));
}
