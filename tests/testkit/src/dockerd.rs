//! A private Docker engine (Debian's dockerd 20.10) for one test: its own data root, exec
//! root, pidfile and socket, no iptables and no bridge, vfs storage, and a daemon.json the test
//! writes. While it runs, Docker Hub's names resolve to loopback (marked lines in /etc/hosts,
//! removed on drop), so its fallback to Docker Hub is refused on the machine, never sent out.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOSTS_MARK: &str = "# dockyard-test-dockerd";

pub struct Dockerd {
    dir: PathBuf,
    child: Option<Child>,
}

impl Dockerd {
    /// Starts dockerd with `daemon_json` (a JSON object's members, without braces).
    pub fn start(dir: &Path, daemon_json: &str) -> Dockerd {
        let dir = dir.to_path_buf();
        std::fs::create_dir_all(dir.join("cfg")).unwrap();
        let config = dir.join("daemon.json");
        std::fs::write(
            &config,
            format!(
                "{{{daemon_json}, \"deprecated-key-path\": \"{}\"}}",
                dir.join("key.json").display()
            ),
        )
        .unwrap();
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        if !hosts.contains(HOSTS_MARK) {
            let line = format!(
                "127.0.0.1 registry-1.docker.io index.docker.io auth.docker.io {HOSTS_MARK}\n"
            );
            std::fs::write("/etc/hosts", format!("{hosts}{line}")).unwrap();
        }
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("root"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--storage-driver=vfs",
            ])
            .arg("--config-file")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd (Debian's docker.io, installed by tests/setup.sh)");
        let d = Dockerd {
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !d
            .docker(&["version"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            assert!(
                Instant::now() < deadline,
                "dockerd did not start:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        d
    }

    /// A `docker` command talking to this engine.
    pub fn docker(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.env(
            "DOCKER_HOST",
            format!("unix://{}", self.dir.join("docker.sock").display()),
        )
        .env("DOCKER_CONFIG", self.dir.join("cfg"))
        .args(args);
        c
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            crate::server::stop_child(child, Duration::from_secs(20));
        }
        if let Ok(hosts) = std::fs::read_to_string("/etc/hosts") {
            let kept: String = hosts
                .lines()
                .filter(|l| !l.contains(HOSTS_MARK))
                .map(|l| format!("{l}\n"))
                .collect();
            let _ = std::fs::write("/etc/hosts", kept);
        }
        // vfs layers under the data root can be mounted while dockerd runs; it is stopped now.
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.join("exec"))
            .stderr(Stdio::null())
            .status();
    }
}
