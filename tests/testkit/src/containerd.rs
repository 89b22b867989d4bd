//! A private containerd for client tests: its own root, state and sockets under a short temp
//! dir, CRI disabled, started by hand and stopped by PID on drop; `ctr` commands talking to it
//! and `hosts.toml` mirror directories for `--hosts-dir`.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::cmd::{cmd, run, tool};
use super::oci;
use super::server;

/// A private containerd (own root, state, sockets; CRI disabled), killed by PID on drop.
pub struct Containerd {
    dir: TempDir,
    child: Option<Child>,
}

impl Containerd {
    pub fn start() -> Containerd {
        // Unix socket paths are limited to ~100 bytes: keep the temp dir short.
        let dir = tempfile::Builder::new()
            .prefix("ctd")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path().display();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n"
        );
        let config_path = dir.path().join("config.toml");
        fs::write(&config_path, config).unwrap();
        let log = File::create(dir.path().join("containerd.log")).unwrap();
        let child = Command::new(tool("containerd"))
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let mut containerd = Containerd {
            dir,
            child: Some(child),
        };
        containerd.wait_ready();
        containerd
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let probe = Command::new(tool("ctr"))
                .arg("--address")
                .arg(self.socket())
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            if probe.success() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        let log = fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
        panic!("containerd did not start:\n{log}");
    }

    /// A `ctr` command talking to this containerd.
    pub fn ctr(&self, args: &[&str]) -> Command {
        let mut command = cmd("ctr", ["--address"]);
        command.arg(self.socket()).args(args);
        command
    }

    /// The hosts.toml directory (`--hosts-dir`) mirroring `upstream` to `mirror_addr`.
    pub fn hosts_dir(&self, upstream: &str, mirror_addr: &str) -> PathBuf {
        let certs_d = self.dir.path().join("certs.d");
        fs::create_dir_all(certs_d.join(upstream)).unwrap();
        let hosts = format!(
            "server = \"http://127.0.0.1:1\"\n\n[host.\"http://{mirror_addr}\"]\n  \
             capabilities = [\"pull\", \"resolve\"]\n"
        );
        fs::write(certs_d.join(upstream).join("hosts.toml"), hosts).unwrap();
        certs_d
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            server::stop_child(child, Duration::from_secs(10));
        }
    }
}

/// Asserts containerd holds image `name` at `manifest_digest` and the manifest bytes match.
pub fn assert_pulled(containerd: &Containerd, name: &str, image: &oci::ImageInfo) {
    let listed = run(&mut containerd.ctr(&["images", "ls", "-q"]));
    assert!(
        listed.lines().any(|l| l == name),
        "{name} not in:\n{listed}"
    );
    let check = run(&mut containerd.ctr(&["images", "check"]));
    let line = check
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} missing from `ctr images check`:\n{check}"));
    assert!(line.contains("complete"), "image incomplete: {line}");
    let manifest = run(&mut containerd.ctr(&["content", "get", &image.manifest_digest]));
    assert_eq!(manifest.as_bytes(), image.manifest.as_slice());
    let layers = run(&mut containerd.ctr(&["content", "ls", "-q"]));
    for digest in &image.layer_digests {
        assert!(
            layers.lines().any(|l| l == digest),
            "layer {digest} not fetched"
        );
    }
}
