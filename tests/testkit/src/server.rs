//! A guard around one registry process under test: Dockyard (`dockyard serve`) or the reference
//! registry, distribution 2.8.2 (`docker-registry serve config.yml`). It picks a free loopback
//! port, captures the process's stdout+stderr (the access log) to a file, waits until `/v2/`
//! answers, and stops the process by PID when dropped. `DOCKYARD_TEST_TARGET=distribution` makes
//! [`Target::from_env`] choose the reference registry, to validate the tests themselves.

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::http;

/// Which registry implementation a [`Server`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Dockyard,
    Distribution,
}

impl Target {
    /// `DOCKYARD_TEST_TARGET=distribution` selects the reference registry; anything else Dockyard.
    pub fn from_env() -> Target {
        match std::env::var("DOCKYARD_TEST_TARGET").as_deref() {
            Ok("distribution") => Target::Distribution,
            _ => Target::Dockyard,
        }
    }

    /// True (after printing a note) when this target lacks OCI 1.1 features (referrers API,
    /// tag deletion): distribution 2.8.2 does.
    pub fn skip_oci_1_1(self, what: &str) -> bool {
        let skip = self == Target::Distribution;
        if skip {
            eprintln!("note: skipping {what}: distribution 2.8.2 does not implement it");
        }
        skip
    }
}

/// How to start a [`Server`].
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    target: Target,
    data_dir: Option<PathBuf>,
    env: Vec<(String, String)>,
    delete_enabled: bool,
    https: bool,
    all_interfaces: bool,
}

impl ServerBuilder {
    /// Listen on every interface (still reached at `127.0.0.1:PORT` by [`Server::addr`]), so
    /// pods on a test bridge reach it at the bridge's address. Dockyard only.
    pub fn all_interfaces(mut self) -> Self {
        self.all_interfaces = true;
        self
    }

    pub fn target(mut self, target: Target) -> Self {
        self.target = target;
        self
    }

    /// Serve this directory instead of a fresh one (to share it between servers).
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Several [`ServerBuilder::env`] at once, such as [`crate::minio::Minio::registry_env`].
    /// When they select a storage driver (`REGISTRY_STORAGE=s3`), the server does not get
    /// its filesystem root directory, and `REGISTRY_STORAGE_DELETE_ENABLED` carries
    /// [`ServerBuilder::delete_enabled`] (distribution replaces its config file's whole
    /// `storage` section, `delete` included, when `REGISTRY_STORAGE` is set).
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    pub fn delete_enabled(mut self, enabled: bool) -> Self {
        self.delete_enabled = enabled;
        self
    }

    /// The server speaks HTTPS (its certificate is configured through [`ServerBuilder::env`]).
    /// Readiness is then an accepted TCP connection: both registries load the certificate
    /// before they accept, and the plain HTTP probe cannot speak TLS.
    pub fn https(mut self) -> Self {
        self.https = true;
        self
    }

    pub fn start(self) -> Server {
        let work = tempfile::Builder::new()
            .prefix("dockyard-server-")
            .tempdir()
            .expect("temp dir");
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| work.path().join("data"));
        fs::create_dir_all(&data_dir).unwrap();
        let mut server = Server {
            target: self.target,
            addr: String::new(),
            data_dir,
            options: self,
            work,
            child: None,
            runs: 0,
        };
        server.spawn();
        server
    }
}

/// A running registry; stopped (by PID) on drop.
pub struct Server {
    pub target: Target,
    /// `127.0.0.1:PORT`; changes on every (re)start.
    pub addr: String,
    pub data_dir: PathBuf,
    options: ServerBuilder,
    work: TempDir,
    child: Option<Child>,
    runs: u32,
}

impl Server {
    /// A fresh server of the target chosen by the environment.
    pub fn start() -> Server {
        Server::builder().start()
    }

    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            target: Target::from_env(),
            data_dir: None,
            env: Vec::new(),
            delete_enabled: false,
            https: false,
            all_interfaces: false,
        }
    }

    /// A scratch directory that lives as long as the server (for configs, client state, ...).
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is not running").id()
    }

    fn log_path(&self) -> PathBuf {
        self.work.path().join(format!("server-{}.log", self.runs))
    }

    /// Everything the current run wrote to stdout and stderr.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Log lines of the current run that mention `method` as a word and contain `needle`.
    pub fn access_lines(&self, method: &str, needle: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|line| has_word(line, method) && line.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// Stops gracefully with SIGTERM (SIGKILL after 20 s) and returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server is not running");
        signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server pid {} ignored SIGTERM for 20 s", child.id());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("server is not running");
        child.kill().expect("SIGKILL server");
        child.wait().unwrap();
    }

    /// Starts the same kind of server again on the same data directory (on a new port). Stops
    /// the running one first, if any.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    /// Starts the server again on the port it had (for clients configured with it), after
    /// a crash or a stop.
    pub fn restart_on_same_port(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        let port = self.addr.rsplit(':').next().and_then(|p| p.parse().ok());
        self.spawn_on(port);
    }

    fn spawn(&mut self) {
        self.spawn_on(None);
    }

    fn spawn_on(&mut self, fixed: Option<u16>) {
        for _attempt in 0..3 {
            self.runs += 1;
            let port = fixed.unwrap_or_else(free_port);
            self.addr = format!("127.0.0.1:{port}");
            let log = File::create(self.log_path()).unwrap();
            let mut command = self.command();
            command
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            let child = command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
            self.child = Some(child);
            if self.wait_ready() {
                return;
            }
            // The port was taken between probing and binding: try another one.
        }
        panic!("{:?} server did not start:\n{}", self.target, self.log());
    }

    fn command(&self) -> Command {
        let data = self.data_dir.display().to_string();
        let delete = self.options.delete_enabled.to_string();
        // Another storage driver chosen through the environment (S3 on MinIO, say).
        let storage_from_env = self
            .options
            .env
            .iter()
            .any(|(k, _)| k == "REGISTRY_STORAGE");
        let mut command = match self.target {
            Target::Dockyard => {
                // DOCKYARD_TEST_BIN runs the tests against another build (an older commit, say).
                let bin = std::env::var("DOCKYARD_TEST_BIN")
                    .map(std::path::PathBuf::from)
                    .unwrap_or_else(|_| crate::dockyard_bin());
                let listen = match self.options.all_interfaces {
                    true => self.addr.replace("127.0.0.1:", "0.0.0.0:"),
                    false => self.addr.clone(),
                };
                let mut c = Command::new(bin);
                c.arg("serve")
                    .env("REGISTRY_HTTP_ADDR", listen)
                    .env("REGISTRY_STORAGE_DELETE_ENABLED", &delete);
                if !storage_from_env {
                    c.env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &data);
                }
                c
            }
            Target::Distribution => {
                let config = self.work.path().join("config.yml");
                let yaml = format!(
                    "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    \
                     rootdirectory: {data}\n  delete:\n    enabled: {delete}\nhttp:\n  \
                     addr: {}\n  secret: dockyard-tests\n",
                    self.addr
                );
                fs::write(&config, yaml).unwrap();
                let mut c = Command::new("docker-registry");
                // Its S3 driver panics when AWS_CA_BUNDLE is set.
                c.arg("serve").arg(config).env_remove("AWS_CA_BUNDLE");
                if storage_from_env {
                    c.env("REGISTRY_STORAGE_DELETE_ENABLED", &delete);
                }
                c
            }
        };
        command.envs(self.options.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Polls `GET /v2/` until it answers; false when the process exited first.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let child = self.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                eprintln!("server exited during startup ({status}):\n{}", self.log());
                self.child = None;
                return false;
            }
            if self.options.https {
                if std::net::TcpStream::connect(&self.addr).is_ok() {
                    return true;
                }
            } else {
                let answer = http::request(&self.addr, "GET", "/v2/", &[], &[]);
                if matches!(answer, Ok(ref resp) if resp.status == 200 || resp.status == 401) {
                    return true;
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "server at {} not ready after 60 s:\n{}",
            self.addr,
            self.log()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child, Duration::from_secs(5));
        }
    }
}

/// Stops a process by PID: SIGTERM, then SIGKILL if it has not exited within `grace`.
pub fn stop_child(mut child: Child, grace: Duration) {
    signal(child.id(), "TERM");
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends a signal to one process by PID.
pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

/// A loopback port that was free a moment ago (bind to 0, read it, release it).
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

/// True when an access-log `line` records HTTP status `code`: Dockyard's `status=201`,
/// distribution's `http.response.status=201` or its combined-log `"PUT /... HTTP/1.1" 201 `.
pub fn has_status(line: &str, code: u16) -> bool {
    line.contains(&format!("status={code}")) || line.contains(&format!("\" {code} "))
}

/// True when `word` appears in `line` delimited by non-alphanumeric characters.
pub fn has_word(line: &str, word: &str) -> bool {
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|token| token == word)
}
