//! `dockyard operator` and `dockyard node-agent` processes for tests against `common::kube`:
//! started with a kubeconfig, a pod (or node) name and the chart's namespace, logging to a
//! file, probed over loopback HTTP, stopped with SIGTERM (and by PID when dropped).

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::kube::KubeApi;
use super::server::signal;

/// Starting, listing Registries and serving on two busy cores, debug build.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// SIGTERM to exit: stop the controller, release the Lease, close the HTTP server.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// One `dockyard operator` process, logging to a file; stopped by PID when dropped.
pub struct Operator {
    pub name: String,
    pub child: Option<Child>,
    pub addr: String,
    pub log: PathBuf,
    pub started: Instant,
}

impl Operator {
    /// Starts `dockyard operator` as `name` with the admin kubeconfig, the Lease in `default`,
    /// and `args` after the defaults (image, metrics address).
    pub fn start(kube: &KubeApi, name: &str, args: &[&str]) -> Operator {
        Operator::start_with(kube, &kube.kubeconfig_path(), name, "default", args)
    }

    /// Starts `dockyard operator` with `kubeconfig` and the Lease in `lease_namespace`; the log
    /// goes to `<name>.log` in the API server's temp dir.
    pub fn start_with(
        kube: &KubeApi,
        kubeconfig: &Path,
        name: &str,
        lease_namespace: &str,
        args: &[&str],
    ) -> Operator {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let log = kube.dir().join(format!("{name}.log"));
        let out = File::create(&log).expect("create operator log");
        let err = out.try_clone().expect("clone log handle");
        let started = Instant::now();
        let level = std::env::var("OPERATOR_LOG").unwrap_or_else(|_| "info,dockyard=debug".into());
        let child = Command::new(crate::dockyard_bin())
            .args(["operator", "--image", "example.test/dockyard:dev"])
            .args(["--metrics-addr", &addr])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", name)
            .env("POD_NAMESPACE", lease_namespace)
            .env("RUST_LOG", level)
            .env_remove("DOCKYARD_IMAGE")
            .env_remove("DOCKYARD_WATCH_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start dockyard operator");
        Operator {
            name: name.to_owned(),
            child: Some(child),
            addr,
            log,
            started,
        }
    }

    /// `GET path`: status and body, or `None` while nothing listens.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        super::http::request(&self.addr, "GET", path, &[], &[])
            .ok()
            .map(|r| (r.status, r.text()))
    }

    /// Polls `path` until `pass` accepts the answer; returns how long that took from now.
    pub fn wait_until(
        &mut self,
        path: &str,
        timeout: Duration,
        pass: impl Fn(u16, &str) -> bool,
    ) -> Duration {
        let began = Instant::now();
        let mut last = None;
        while began.elapsed() < timeout {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("{} exited early ({status}):\n{}", self.name, self.log());
            }
            last = self.get(path);
            if let Some((status, body)) = &last
                && pass(*status, body)
            {
                return began.elapsed();
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{}: GET {path} never passed in {timeout:?}; last answer {last:?}\n{}",
            self.name,
            self.log()
        );
    }

    /// Waits until `/readyz` answers 200 with `ok: <role>` (`leading` or `standby`).
    pub fn wait_ready(&mut self, role: &str) -> Duration {
        let body = format!("ok: {role}");
        self.wait_until("/readyz", STARTUP_TIMEOUT, |status, text| {
            status == 200 && text.trim() == body
        })
    }

    /// Sends SIGTERM and waits for the exit: its status and how long it took.
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("operator still running");
        signal(child.id(), "TERM");
        let began = Instant::now();
        while began.elapsed() < EXIT_TIMEOUT {
            if let Some(status) = child.try_wait().expect("wait for operator") {
                return (status, began.elapsed());
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{} did not exit within {EXIT_TIMEOUT:?} of SIGTERM:\n{}",
            self.name,
            self.log()
        );
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has a line containing every one of `needles`; returns that line.
    pub fn wait_log_line(&self, needles: &[&str], timeout: Duration) -> String {
        let began = Instant::now();
        while began.elapsed() < timeout {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_owned();
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{}: no log line with {needles:?} within {timeout:?}:\n{}",
            self.name,
            self.log()
        );
    }

    /// Waits until no reconcile has run for two seconds (the Registry's own children stop
    /// triggering it), so the next trigger's reason is not merged into a pending reconcile.
    pub fn settle(&self) {
        let began = Instant::now();
        let (mut last, mut since) = (self.reconciles(), Instant::now());
        while since.elapsed() < Duration::from_secs(2) {
            assert!(
                began.elapsed() < Duration::from_secs(60),
                "{} keeps reconciling:\n{}",
                self.name,
                self.log()
            );
            thread::sleep(Duration::from_millis(250));
            let now = self.reconciles();
            if now != last {
                (last, since) = (now, Instant::now());
            }
        }
    }

    /// The `dockyard_reconciles_total{kind="Registry"}` counter, 0 while absent.
    pub fn reconciles(&self) -> u64 {
        let (_, body) = self.get("/metrics").expect("metrics answer");
        body.lines()
            .find_map(|l| l.strip_prefix("dockyard_reconciles_total{kind=\"Registry\"} "))
            .map_or(0, |v| v.trim().parse().expect("counter value"))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            super::server::stop_child(child, Duration::from_secs(5));
        }
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// `dockyard node-agent` for node `node` whose root is `root`, with `kubeconfig`, plans and
/// reports in `namespace` and a 5-second resync; stopped by PID when dropped.
pub struct NodeAgent {
    child: Option<Child>,
    pub log: PathBuf,
}

impl NodeAgent {
    pub fn start(
        kube: &KubeApi,
        kubeconfig: &Path,
        node: &str,
        namespace: &str,
        root: &Path,
    ) -> NodeAgent {
        let log = kube.dir().join(format!("node-agent-{node}.log"));
        let out = File::create(&log).expect("create agent log");
        let err = out.try_clone().expect("clone log handle");
        let port = free_port();
        let child = Command::new(crate::dockyard_bin())
            .arg("node-agent")
            .env("KUBECONFIG", kubeconfig)
            .env("NODE_NAME", node)
            .env("POD_NAMESPACE", namespace)
            .env("DOCKYARD_HOST_ROOT", root)
            .env("DOCKYARD_METRICS_ADDR", format!("127.0.0.1:{port}"))
            .env("DOCKYARD_RESYNC_SECONDS", "5")
            .env("RUST_LOG", "info,dockyard=debug")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start dockyard node-agent");
        NodeAgent {
            child: Some(child),
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("agent still running");
        crate::server::signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("wait for the agent") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the node agent ignored SIGTERM:\n{}", self.log());
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            crate::server::stop_child(child, Duration::from_secs(5));
        }
    }
}
