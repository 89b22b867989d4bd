//! One real single-node cluster (`tests/cluster/up.sh`: etcd, kube-apiserver, controller-manager,
//! scheduler, containerd, kubelet, kube-proxy) shared by every test of this crate, with
//! Dockyard's image built from the binary under test (`image/build.py`) and imported into the
//! node's containerd. Tests take turns (one lock), because they share the chart's release.
//!
//! The cluster starts with the first test and stops when the test process exits. To keep one
//! up across runs, start it yourself and point the tests at it:
//! `DOCKYARD_CLUSTER_DIR=$(sudo bash tests/cluster/up.sh | sed -n 's/^MC_DIR=//p')`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::cmd::{Outcome, run, run_capture};
use crate::common::kube::tools_bin;

/// The image name the chart is installed with.
pub const IMAGE: &str = "dockyard.dev/dockyard";
pub const TAG: &str = "test";
/// The chart's release and namespace.
pub const RELEASE: &str = "dockyard";
pub const OPERATOR_NS: &str = "dockyard-system";

pub struct Cluster {
    pub dir: PathBuf,
    pub env: HashMap<String, String>,
    /// The image archive, for tests that import it under another tag.
    pub archive: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static TURN: Mutex<()> = Mutex::new(());
static STARTED_DIR: OnceLock<PathBuf> = OnceLock::new();

/// This test's turn: the tests of this crate run one at a time.
pub fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

/// The shared cluster, with the chart installed, and this test's turn on it.
pub fn cluster() -> (MutexGuard<'static, ()>, &'static Cluster) {
    let turn = turn();
    let c = CLUSTER.get_or_init(Cluster::start);
    c.ensure_installed();
    (turn, c)
}

extern "C" fn stop_cluster() {
    if let Some(dir) = STARTED_DIR.get() {
        let _ = Command::new("bash")
            .arg(repo().join("tests/cluster/down.sh"))
            .arg(dir)
            .status();
    }
}

/// The image of the binary under test (`image/build.py`), as an OCI archive, built once.
pub fn image_archive() -> &'static std::path::Path {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        // Under target/ (statics are never dropped: a temp dir would be left behind).
        let archive = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dockyard.oci.tar");
        let began = Instant::now();
        let out = run(Command::new("python3").args([
            repo().join("image/build.py").as_os_str(),
            "--binary".as_ref(),
            env!("CARGO_BIN_EXE_dockyard").as_ref(),
            "--name".as_ref(),
            format!("{IMAGE}:{TAG}").as_ref(),
            "--out".as_ref(),
            archive.as_os_str(),
        ]));
        eprintln!("image built in {:?}: {out}", began.elapsed());
        archive
    })
}

pub use crate::common::repo;

impl Cluster {
    fn start() -> Cluster {
        let dir = match std::env::var_os("DOCKYARD_CLUSTER_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => {
                // SAFETY: geteuid has no preconditions.
                assert_eq!(
                    unsafe { libc::geteuid() },
                    0,
                    "the cluster tests start a kubelet and need root"
                );
                // up.sh's watchdog stops it when this process ends, even if killed.
                let out = run(Command::new("bash")
                    .arg(repo().join("tests/cluster/up.sh"))
                    .env("DOCKYARD_TOOLS", repo().join(".tools"))
                    .env("MC_WATCH_PID", std::process::id().to_string()));
                let dir = out
                    .lines()
                    .find_map(|l| l.strip_prefix("MC_DIR="))
                    .map(PathBuf::from)
                    .expect("up.sh printed MC_DIR");
                STARTED_DIR.set(dir.clone()).unwrap();
                // SAFETY: registers a plain function to run at exit.
                unsafe { libc::atexit(stop_cluster) };
                dir
            }
        };
        let env = std::fs::read_to_string(dir.join("env"))
            .expect("the cluster's env file")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let c = Cluster {
            dir,
            env,
            archive: image_archive().to_owned(),
        };
        c.import_image(&format!("{IMAGE}:{TAG}"));
        c
    }

    /// Imports the image archive into the node's containerd as `name`.
    pub fn import_image(&self, name: &str) {
        run(&mut self.ctr(&["images", "import", &self.archive.to_string_lossy()]));
        let built = format!("{IMAGE}:{TAG}");
        if name != built {
            let _ = run_capture(&mut self.ctr(&["images", "rm", name]));
            run(&mut self.ctr(&["images", "tag", &built, name]));
        }
    }

    pub fn ctr(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.args([
            "--address",
            &self.env["MC_CONTAINERD_SOCK"],
            "--namespace",
            "k8s.io",
        ])
        .args(args);
        c
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(tools_bin("kubectl"));
        c.arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.join("kubectl-cache"))
            .args(args);
        c
    }

    /// kubectl with `args`; asserts success and returns stdout.
    pub fn kubectl(&self, args: &[&str]) -> String {
        run(&mut self.kubectl_command(args))
    }

    pub fn kubectl_capture(&self, args: &[&str]) -> Outcome {
        run_capture(&mut self.kubectl_command(args))
    }

    /// `kubectl get ... -o json`, parsed; `None` when it does not exist.
    pub fn get(&self, args: &[&str]) -> Option<Value> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let out = self.kubectl_capture(&all);
        if !out.status.success() {
            assert!(
                out.stderr.contains("NotFound"),
                "kubectl {all:?}: {}",
                out.stderr
            );
            return None;
        }
        Some(serde_json::from_str(&out.stdout).expect("kubectl JSON"))
    }

    /// Server-side applies `yaml` (the way GitOps tools do).
    pub fn apply(&self, name: &str, yaml: &str) -> String {
        let path = self.manifest(name, yaml);
        self.kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=e2e",
            "-f",
            &path.to_string_lossy(),
        ])
    }

    pub fn manifest(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.dir.join("manifests").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, yaml).unwrap();
        path
    }

    pub fn helm(&self, args: &[&str]) -> Outcome {
        let mut c = Command::new(tools_bin("helm"));
        c.arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"));
        run_capture(&mut c)
    }

    /// `helm upgrade --install` of the chart with the image under `tag`, waiting for the
    /// operator to be Ready.
    pub fn install(&self, tag: &str) -> Outcome {
        let chart = repo().join("charts/dockyard");
        self.helm(&[
            "upgrade",
            "--install",
            RELEASE,
            &chart.to_string_lossy(),
            "--namespace",
            OPERATOR_NS,
            "--create-namespace",
            "--set",
            &format!("image.repository={IMAGE}"),
            "--set",
            &format!("image.tag={tag}"),
            "--set",
            "image.pullPolicy=Never",
            // The node agent writes the test bed's private containerd config: its config
            // file, its config_path and the agent's state all live under the cluster's dir.
            "--set",
            &format!("nodeAgent.hostPaths={{{}}}", self.dir.display()),
            "--set",
            &format!(
                "nodeAgent.containerdConfig={}",
                self.dir.join("containerd/config.toml").display()
            ),
            "--set",
            &format!(
                "nodeAgent.containerdSocket={}",
                self.env["MC_CONTAINERD_SOCK"]
            ),
            "--set",
            &format!(
                "nodeAgent.stateDir={}",
                self.dir.join("node-agent").display()
            ),
            "--set",
            "nodeAgent.resyncSeconds=10",
            "--wait",
            "--timeout",
            "120s",
        ])
    }

    fn ensure_installed(&self) {
        let deployed = self.helm(&["status", RELEASE, "--namespace", OPERATOR_NS]);
        if !deployed.status.success() || !deployed.stdout.contains("STATUS: deployed") {
            let out = self.install(TAG);
            assert!(out.status.success(), "helm install: {}", out.stderr);
        }
    }

    /// Waits until `check` gives `Some`, or panics after `timeout` with `what`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check() {
                return v;
            }
            if Instant::now() > deadline {
                let pods = self.kubectl_capture(&["get", "pods", "-A", "-o", "wide"]);
                let events =
                    self.kubectl_capture(&["get", "events", "-A", "--sort-by=.lastTimestamp"]);
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n{}\n{}",
                    pods.stdout, events.stdout
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A directory with `ca.crt` only, for clients (`--cert-dir`) that trust just this CA.
    pub fn ca_dir(&self, name: &str, pem: &[u8]) -> PathBuf {
        let dir = self.dir.join("trust").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.crt"), pem).unwrap();
        dir
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
}

/// Base64-decodes a Secret's data value.
pub fn secret_value(secret: &Value, key: &str) -> Vec<u8> {
    use base64::Engine;
    let encoded = secret["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("secret has no {key}: {secret}"));
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64")
}

/// The condition `kind` of an object's status, if any.
pub fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

pub fn is_true(object: &Value, kind: &str) -> bool {
    condition(object, kind).is_some_and(|c| c["status"] == "True")
}
