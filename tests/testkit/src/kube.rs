//! A real Kubernetes API server for operator tests: [`KubeApi::start`] runs etcd and
//! kube-apiserver (built by `tests/setup.sh` into `$DOCKYARD_TOOLS/bin`) on free loopback ports
//! with a private temp dir, certificates made with the `openssl` CLI (a CA, the API server's
//! serving cert for 127.0.0.1/localhost, a service-account key pair and an admin client cert in
//! `system:masters`), and an admin kubeconfig. There is no kubelet, scheduler or
//! controller-manager: objects are stored, validated and admitted (CRDs, CEL rules, RBAC), but no
//! pod runs, no status changes unless a test writes it, and deleted namespaces stay
//! `Terminating`. Both processes are stopped by PID when the guard is dropped.

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::cmd::{Outcome, run, run_capture};

/// How long the API server may take to answer `/readyz` with `ok` (2 busy cores, cold caches).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The OpenSSL config for the test PKI: one extension section per certificate kind.
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = dockyard-test
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
";

/// A running etcd + kube-apiserver pair; dropping it stops both and deletes their data.
pub struct KubeApi {
    dir: TempDir,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    server_url: String,
    startup: Duration,
}

impl KubeApi {
    /// Generates the PKI, starts etcd and kube-apiserver, waits for `/readyz` and writes the
    /// admin kubeconfig. Panics (with the tail of both logs) when the server does not come up.
    pub fn start() -> KubeApi {
        let began = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("dockyard-kube-")
            .tempdir()
            .expect("create temp dir");
        make_pki(dir.path());
        let mut api = KubeApi {
            dir,
            etcd: None,
            apiserver: None,
            server_url: String::new(),
            startup: Duration::ZERO,
        };
        // A port picked free can be taken before the server binds it: retry with new ports.
        for attempt in 1..=3 {
            let port = api.spawn(attempt);
            match api.wait_ready(port) {
                Ok(()) => break,
                Err(why) if attempt < 3 && api.logs().contains("address already in use") => {
                    eprintln!("kube: attempt {attempt}: {why}; retrying on new ports");
                    api.stop();
                }
                Err(why) => panic!("kube-apiserver did not become ready: {why}\n{}", api.logs()),
            }
        }
        api.write_kubeconfig();
        api.startup = began.elapsed();
        eprintln!(
            "kube: API server {} ready in {:.1?} (dir {})",
            api.server_url,
            api.startup,
            api.dir.path().display()
        );
        api
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The admin kubeconfig (client cert in `system:masters`, namespace `default`).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// The CA that signed the serving cert and the client certs (also the `--client-ca-file`).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.path().join("pki/ca.crt")
    }

    /// The temp dir holding the PKI, etcd's data, both logs and the kubeconfig.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Wall time [`KubeApi::start`] took, PKI included.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// A `kubectl` command (from `.tools/bin`) bound to this server's admin kubeconfig, with a
    /// private discovery cache. Add arguments, environment or stdin as needed.
    pub fn kubectl_command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(tools_bin("kubectl"));
        command
            .arg("--kubeconfig")
            .arg(self.kubeconfig_path())
            .arg("--cache-dir")
            .arg(self.dir.path().join("kubectl-cache"))
            .args(args);
        command
    }

    /// Runs kubectl with `args`, asserts it succeeded and returns its stdout.
    pub fn kubectl(&self, args: &[&str]) -> String {
        run(&mut self.kubectl_command(args))
    }

    /// Runs kubectl with `args` and returns the outcome, success or not.
    pub fn kubectl_capture(&self, args: &[&str]) -> Outcome {
        run_capture(&mut self.kubectl_command(args))
    }

    /// Writes `yaml` to a file in the temp dir (for `kubectl apply -f`) and returns its path.
    pub fn manifest(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.dir.path().join("manifests").join(name);
        fs::create_dir_all(path.parent().unwrap()).expect("create manifests dir");
        fs::write(&path, yaml).expect("write manifest");
        path
    }

    /// `kubectl apply -f` of `yaml` (written under `name`): the outcome, success or not.
    pub fn apply(&self, name: &str, yaml: &str) -> Outcome {
        let path = self.manifest(name, yaml);
        run_capture(&mut self.kubectl_command(["apply".as_ref(), "-f".as_ref(), path.as_os_str()]))
    }

    /// Like [`KubeApi::apply`], retrying while kubectl's discovery has not yet seen a
    /// just-established CRD ("no matches for kind").
    pub fn apply_when_served(&self, name: &str, yaml: &str) -> Outcome {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let outcome = self.apply(name, yaml);
            if outcome.status.success()
                || !outcome.stderr.contains("no matches for kind")
                || Instant::now() > deadline
            {
                return outcome;
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// Starts etcd and kube-apiserver on fresh ports; returns the API server's port.
    fn spawn(&mut self, attempt: u32) -> u16 {
        let root = self.dir.path();
        let (client, peer, secure) = (free_port(), free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let data = root.join(format!("etcd-{attempt}"));
        let etcd = [
            "--name=test".to_string(),
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=test={peer_url}"),
            "--unsafe-no-fsync=true".to_string(),
            "--log-level=warn".to_string(),
        ];
        self.etcd = Some(spawn_logged("etcd", &etcd, &root.join("etcd.log")));

        let pki = root.join("pki");
        let file = |name: &str| pki.join(name).display().to_string();
        let apiserver = [
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".to_string(),
            format!("--secure-port={secure}"),
            format!("--cert-dir={}", root.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", file("apiserver.crt")),
            format!("--tls-private-key-file={}", file("apiserver.key")),
            format!("--client-ca-file={}", file("ca.crt")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
            format!("--service-account-key-file={}", file("sa.pub")),
            format!("--service-account-signing-key-file={}", file("sa.key")),
            "--service-cluster-ip-range=10.96.0.0/16".to_string(),
            "--authorization-mode=RBAC".to_string(),
            // The `kubernetes` Service's Endpoints may not hold a loopback address.
            "--endpoint-reconciler-type=none".to_string(),
            // Needs the controller-manager to create each namespace's `default` account.
            "--disable-admission-plugins=ServiceAccount".to_string(),
            "--profiling=false".to_string(),
            "--v=0".to_string(),
        ];
        self.apiserver = Some(spawn_logged(
            "kube-apiserver",
            &apiserver,
            &root.join("apiserver.log"),
        ));
        self.server_url = format!("https://127.0.0.1:{secure}");
        secure
    }

    /// Polls `/readyz` (as admin, through curl) until it answers `ok`.
    fn wait_ready(&mut self, port: u16) -> Result<(), String> {
        let pki = self.dir.path().join("pki");
        let url = format!("https://127.0.0.1:{port}/readyz");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            for (name, child) in [
                ("etcd", &mut self.etcd),
                ("kube-apiserver", &mut self.apiserver),
            ] {
                if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    return Err(format!("{name} exited early: {status}"));
                }
            }
            let probe = Command::new("curl")
                .args(["-sS", "--max-time", "2", "--cacert"])
                .arg(pki.join("ca.crt"))
                .arg("--cert")
                .arg(pki.join("admin.crt"))
                .arg("--key")
                .arg(pki.join("admin.key"))
                .arg(&url)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run curl (run tests/setup.sh): {e}"))?;
            if probe.status.success() && probe.stdout == b"ok" {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no `ok` from {url} after {READY_TIMEOUT:?}; last answer: {}",
                    String::from_utf8_lossy(&probe.stdout)
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn write_kubeconfig(&self) {
        let pki = self.dir.path().join("pki");
        let config = format!(
            "apiVersion: v1
kind: Config
clusters:
- name: dockyard-test
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: admin
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: dockyard-test
  context:
    cluster: dockyard-test
    user: admin
    namespace: default
current-context: dockyard-test
",
            server = self.server_url,
            ca = pki.join("ca.crt").display(),
            cert = pki.join("admin.crt").display(),
            key = pki.join("admin.key").display(),
        );
        fs::write(self.kubeconfig_path(), config).expect("write kubeconfig");
    }

    /// The last lines of both logs, for failure messages.
    fn logs(&self) -> String {
        let tail = |name: &str| {
            let text = fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "--- apiserver.log (tail) ---\n{}\n--- etcd.log (tail) ---\n{}",
            tail("apiserver.log"),
            tail("etcd.log")
        )
    }

    /// Stops the API server, then etcd: SIGTERM by PID, SIGKILL after 5 s.
    fn stop(&mut self) {
        let began = Instant::now();
        let children = [self.apiserver.take(), self.etcd.take()];
        if children.iter().any(Option::is_some) {
            children.into_iter().flatten().for_each(stop_child);
            eprintln!("kube: stopped in {:.1?}", began.elapsed());
        }
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stop_child(child: Child) {
    super::server::stop_child(child, Duration::from_secs(5));
}

/// `$DOCKYARD_TOOLS/bin/NAME` or `<repo>/.tools/bin/NAME`, never `PATH`: `/usr/bin/kubectl` is
/// an unrelated wrapper and Debian's etcd is older than the one setup.sh builds.
pub fn tools_bin(name: &str) -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("DOCKYARD_TOOLS") {
        candidates.push(PathBuf::from(dir).join("bin").join(name));
    }
    candidates.push(crate::repo().join(".tools/bin").join(name));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` not found in .tools/bin: run tests/setup.sh"))
}

fn spawn_logged(name: &str, args: &[String], log: &Path) -> Child {
    let out = File::create(log).expect("create log file");
    let err = out.try_clone().expect("clone log file");
    Command::new(tools_bin(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
}

/// The CA, the API server's serving cert, the admin client cert and the service-account key
/// pair, all EC P-256, valid for two days, in `root/pki`.
fn make_pki(root: &Path) {
    let pki = root.join("pki");
    fs::create_dir_all(&pki).expect("create pki dir");
    let cnf = pki.join("openssl.cnf");
    fs::write(&cnf, OPENSSL_CNF).expect("write openssl.cnf");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(&pki)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run openssl");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "openssl {args:?}: {stderr}");
    };
    let cnf = cnf.to_str().expect("utf-8 temp path");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-noenc",
    ];
    let mut ca = vec!["req", "-x509", "-config", cnf, "-extensions", "ca"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=dockyard-test-ca",
    ]);
    openssl(&ca);
    for (name, section, subject) in [
        ("apiserver", "server", "/CN=kube-apiserver"),
        ("admin", "client", "/O=system:masters/CN=admin"),
    ] {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        let mut req = vec!["req", "-new", "-config", cnf];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
        openssl(&req);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            cnf,
            "-extensions",
            section,
            "-out",
            &crt,
        ]);
    }
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        "sa.key",
    ]);
    openssl(&["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}
