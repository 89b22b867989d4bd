//! Operator scale benchmark (ignored by default; `bench/operator.sh` runs it with
//! `cargo test --release --test operator_bench -- --ignored --nocapture`).
//!
//! Against a real etcd + kube-apiserver on loopback (`common::kube`), with the CRDs applied and
//! `dockyard operator --leader-election=false` running, it measures:
//! - **one Registry** (users from a password Secret, pull Secrets in one other namespace,
//!   selfSigned TLS): from spawning `kubectl apply` to every child existing and
//!   `.status.observedGeneration` written, polled every 20 ms; median of 5, fresh names each.
//! - **a burst** of 300 Registries in one multi-document `kubectl apply`, spread over four
//!   namespaces, every other one with a user and a pull Secret elsewhere: from spawning kubectl
//!   to every Registry's `status.observedGeneration == metadata.generation` and every child
//!   existing (polled every 250 ms), and the operator's idle and peak RSS.
//!
//! No kubelet runs, so Ready stays False: the measure is "children created and status written".
//! The table goes to stdout and to `$BENCH_OPERATOR_OUT/results.txt`, with the operator's and the
//! API server's logs next to it. Knobs: `BENCH_OPERATOR_RUNS` (5), `BENCH_OPERATOR_BURST` (300),
//! `DOCKYARD_BIN` (default: the binary cargo built with this test), `OPERATOR_LOG` (RUST_LOG).

use dockyard_testkit as common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::kube::KubeApi;
use common::operator::Operator;
use dockyard::operator::crd::Registry;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use kube::api::{Api, ListParams};

const CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/dockyard.dev.yaml");
const IMAGE: &str = "example.test/dockyard:bench";
/// Targets: one Registry (s), the burst (s), the operator's peak RSS during the burst (MiB).
const TARGET_ONE_S: f64 = 2.0;
const TARGET_BURST_S: f64 = 60.0;
const TARGET_PEAK_MIB: f64 = 150.0;
/// Bounds on every wait: one Registry, the burst.
const ONE_TIMEOUT: Duration = Duration::from_secs(60);
const BURST_TIMEOUT: Duration = Duration::from_secs(600);
const BURST_NAMESPACES: usize = 4;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// User + system CPU time of PID, in seconds.
fn proc_cpu_s(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The operator's counters we report: reconciles, their total duration, failures.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    reconciles: f64,
    duration_sum: f64,
    duration_count: f64,
    failures: f64,
}

fn counters(op: &Operator) -> Counters {
    let (_, body) = op.get("/metrics").expect("metrics answer");
    let mut c = Counters::default();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value: f64 = value.parse().unwrap_or(0.0);
        if key.starts_with("dockyard_reconciles_total{") {
            c.reconciles += value;
        } else if key.starts_with("dockyard_reconcile_duration_seconds_sum{") {
            c.duration_sum += value;
        } else if key.starts_with("dockyard_reconcile_duration_seconds_count{") {
            c.duration_count += value;
        } else if key.starts_with("dockyard_reconcile_failures_total{") {
            c.failures += value;
        }
    }
    c
}

/// Starts the release operator with the bench image, no leader election, a free metrics port.
fn start_operator(kube: &KubeApi) -> Operator {
    let bin = std::env::var_os("DOCKYARD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_dockyard")));
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let log = kube.dir().join("operator.log");
    let out = File::create(&log).expect("create operator log");
    let err = out.try_clone().expect("clone log handle");
    let level = std::env::var("OPERATOR_LOG").unwrap_or_else(|_| "info,dockyard=debug".into());
    eprintln!("bench: operator {}", bin.display());
    let started = Instant::now();
    let child = Command::new(&bin)
        .args(["operator", "--image", IMAGE, "--leader-election=false"])
        .args(["--metrics-addr", &addr])
        .env("KUBECONFIG", kube.kubeconfig_path())
        .env("POD_NAME", "operator-bench")
        .env("POD_NAMESPACE", "default")
        .env("RUST_LOG", level)
        .env_remove("DOCKYARD_IMAGE")
        .env_remove("DOCKYARD_WATCH_NAMESPACE")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    Operator {
        name: "operator-bench".into(),
        child: Some(child),
        addr,
        log,
        started,
    }
}

/// A running `kubectl apply`; killed and reaped if still running when dropped.
struct Kubectl(Child);

impl Drop for Kubectl {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn spawn_apply(kube: &KubeApi, file: &std::path::Path) -> Kubectl {
    Kubectl(
        kube.kubectl_command(["apply".as_ref(), "-f".as_ref(), file.as_os_str()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl apply"),
    )
}

/// Checks a running kubectl: `Some(seconds since t0)` once it exited successfully.
fn kubectl_done(kubectl: &mut Kubectl, t0: Instant, done: &mut Option<f64>) {
    let child = &mut kubectl.0;
    if done.is_none()
        && let Some(status) = child.try_wait().expect("wait for kubectl")
    {
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        assert!(status.success(), "kubectl apply failed: {status}\n{stderr}");
        *done = Some(t0.elapsed().as_secs_f64());
    }
}

fn registry_yaml(name: &str, namespace: &str, auth: bool, pull_ns: Option<&str>) -> String {
    let mut y = format!(
        "apiVersion: dockyard.dev/v1alpha1\nkind: Registry\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels: {{bench: dockyard}}\nspec:\n  tls: {{selfSigned: {{}}}}\n"
    );
    if auth {
        y.push_str("  auth:\n    users:\n      - username: alice\n        passwordSecretRef: {name: pw, key: alice}\n");
    }
    if let Some(ns) = pull_ns {
        let _ = writeln!(y, "  pullSecrets:\n    namespaces: [{ns}]");
    }
    y
}

/// The children a Registry must have: (kind, namespace, name).
fn children(
    name: &str,
    namespace: &str,
    auth: bool,
    pull_ns: Option<&str>,
) -> Vec<(&'static str, String, String)> {
    let ns = || namespace.to_owned();
    let mut c = vec![
        ("Deployment", ns(), name.to_owned()),
        ("Service", ns(), name.to_owned()),
        ("PersistentVolumeClaim", ns(), format!("{name}-data")),
        ("ConfigMap", ns(), format!("{name}-config")),
        ("Secret", ns(), format!("{name}-ca")),
        ("Secret", ns(), format!("{name}-tls")),
        ("Secret", ns(), format!("{name}-pull-credentials")),
    ];
    if auth {
        c.push(("Secret", ns(), format!("{name}-htpasswd")));
    }
    if let Some(p) = pull_ns {
        c.push(("Secret", p.to_owned(), format!("{name}-pull")));
    }
    c
}

async fn exists(client: &kube::Client, kind: &str, ns: &str, name: &str) -> bool {
    macro_rules! probe {
        ($k:ty) => {
            Api::<$k>::namespaced(client.clone(), ns)
                .get_metadata_opt(name)
                .await
                .expect("GET child")
                .is_some()
        };
    }
    match kind {
        "Deployment" => probe!(Deployment),
        "Service" => probe!(Service),
        "PersistentVolumeClaim" => probe!(PersistentVolumeClaim),
        "ConfigMap" => probe!(ConfigMap),
        "Secret" => probe!(Secret),
        other => panic!("unknown kind {other}"),
    }
}

/// Every (kind, namespace, name) of the five child kinds, across all namespaces (metadata only).
async fn all_children(
    client: &kube::Client,
) -> std::collections::HashSet<(String, String, String)> {
    let mut set = std::collections::HashSet::new();
    macro_rules! collect {
        ($k:ty, $kind:expr) => {
            for m in Api::<$k>::all(client.clone())
                .list_metadata(&ListParams::default())
                .await
                .expect("LIST children")
                .items
            {
                set.insert((
                    $kind.to_owned(),
                    m.metadata.namespace.unwrap_or_default(),
                    m.metadata.name.unwrap_or_default(),
                ));
            }
        };
    }
    collect!(Deployment, "Deployment");
    collect!(Service, "Service");
    collect!(PersistentVolumeClaim, "PersistentVolumeClaim");
    collect!(ConfigMap, "ConfigMap");
    collect!(Secret, "Secret");
    set
}

fn observed(r: &Registry) -> bool {
    r.metadata.generation.is_some()
        && r.status.as_ref().and_then(|s| s.observed_generation) == r.metadata.generation
}

/// One Registry's timings (s, from spawning kubectl): kubectl exited, Registry stored, all done.
struct OneRun {
    kubectl: f64,
    stored: f64,
    done: f64,
}

async fn one_registry(kube: &KubeApi, client: &kube::Client, name: &str) -> OneRun {
    let (ns, pull_ns) = ("bench-one", "bench-apps");
    let file = kube.manifest(
        &format!("{name}.yaml"),
        &registry_yaml(name, ns, true, Some(pull_ns)),
    );
    let registries = Api::<Registry>::namespaced(client.clone(), ns);
    let mut missing = children(name, ns, true, Some(pull_ns));
    let t0 = Instant::now();
    let mut kubectl = spawn_apply(kube, &file);
    let (mut kubectl_s, mut stored, mut status_s) = (None, None, None);
    loop {
        kubectl_done(&mut kubectl, t0, &mut kubectl_s);
        if status_s.is_none() {
            if let Some(r) = registries.get_opt(name).await.expect("GET Registry") {
                stored.get_or_insert(t0.elapsed().as_secs_f64());
                if observed(&r) {
                    status_s = Some(t0.elapsed().as_secs_f64());
                }
            }
        }
        // Children appear for good: check only those still missing, first one first.
        while let Some((kind, cns, cname)) = missing.first() {
            if !exists(client, kind, cns, cname).await {
                break;
            }
            missing.remove(0);
        }
        if status_s.is_some() && missing.is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < ONE_TIMEOUT,
            "{name}: not done after {ONE_TIMEOUT:?}: stored {stored:?}, status {status_s:?}, missing {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = t0.elapsed().as_secs_f64();
    let _ = status_s;
    while kubectl_s.is_none() {
        kubectl_done(&mut kubectl, t0, &mut kubectl_s);
        assert!(t0.elapsed() < ONE_TIMEOUT, "kubectl apply of {name} hangs");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    OneRun {
        kubectl: kubectl_s.unwrap(),
        stored: stored.unwrap(),
        done,
    }
}

/// The burst: (kubectl exited, all statuses written, all done) in seconds from spawning kubectl,
/// or the progress made when the bound runs out.
struct Burst {
    kubectl: f64,
    statuses: Option<f64>,
    done: Option<f64>,
    observed: usize,
    missing_children: usize,
}

async fn burst(kube: &KubeApi, client: &kube::Client, count: usize) -> Burst {
    let mut yaml = String::new();
    let mut expected = Vec::new();
    for i in 0..count {
        let (name, ns) = (
            format!("burst-{i:03}"),
            format!("burst-{}", i % BURST_NAMESPACES),
        );
        let auth = i % 2 == 0;
        let pull = auth.then_some("burst-apps");
        yaml.push_str("---\n");
        yaml.push_str(&registry_yaml(&name, &ns, auth, pull));
        expected.extend(children(&name, &ns, auth, pull));
    }
    let file = kube.manifest("burst.yaml", &yaml);
    let selector = ListParams::default().labels("bench=dockyard");
    let registries = Api::<Registry>::all(client.clone());
    let t0 = Instant::now();
    let mut kubectl = spawn_apply(kube, &file);
    let (mut kubectl_s, mut statuses, mut done) = (None, None, None);
    let (mut n_observed, mut n_missing) = (0, expected.len());
    let mut last_report = Instant::now();
    while t0.elapsed() < BURST_TIMEOUT {
        kubectl_done(&mut kubectl, t0, &mut kubectl_s);
        let list = registries.list(&selector).await.expect("LIST Registries");
        n_observed = list
            .items
            .iter()
            .filter(|r| {
                r.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("burst-"))
            })
            .filter(|r| observed(r))
            .count();
        if n_observed == count {
            statuses.get_or_insert(t0.elapsed().as_secs_f64());
            let have = all_children(client).await;
            n_missing = expected
                .iter()
                .filter(|(k, ns, n)| !have.contains(&((*k).to_owned(), ns.clone(), n.clone())))
                .count();
            if n_missing == 0 {
                done = Some(t0.elapsed().as_secs_f64());
                break;
            }
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "bench: burst {:.0}s: {n_observed}/{count} statuses written, kubectl {}",
                t0.elapsed().as_secs_f64(),
                kubectl_s.map_or("running".into(), |s| format!("done in {s:.1}s"))
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    while kubectl_s.is_none() && t0.elapsed() < BURST_TIMEOUT + Duration::from_secs(60) {
        kubectl_done(&mut kubectl, t0, &mut kubectl_s);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Burst {
        kubectl: kubectl_s.unwrap_or(f64::NAN),
        statuses,
        done,
        observed: n_observed,
        missing_children: n_missing,
    }
}

struct Table(String);

impl Table {
    fn head(&mut self, title: &str) {
        let _ = writeln!(self.0, "\n== {title} ==");
        let _ = writeln!(
            self.0,
            "{:<44} {:>10}  {:<12} result",
            "metric", "value", "target"
        );
    }
    /// A row; `target` is `Some(limit)` for "value <= limit".
    fn row(&mut self, label: &str, value: f64, target: Option<f64>) {
        let (rule, verdict) = match target {
            Some(limit) => (
                format!("<= {limit}"),
                if value <= limit { "PASS" } else { "MISS" },
            ),
            None => (String::new(), ""),
        };
        let shown = if value.is_nan() {
            "nan".into()
        } else if value >= 100.0 {
            format!("{value:.0}")
        } else if value >= 10.0 {
            format!("{value:.1}")
        } else {
            format!("{value:.3}")
        };
        let _ = writeln!(self.0, "{label:<44} {shown:>10}  {rule:<12} {verdict}");
    }
    fn note(&mut self, text: &str) {
        let _ = writeln!(self.0, "# {text}");
    }
}

/// Waits (bounded) until the reconcile counter has not moved for `quiet`; returns when it last moved.
fn settle(op: &Operator, quiet: Duration, limit: Duration) -> Instant {
    let began = Instant::now();
    let (mut last, mut since) = (counters(op).reconciles, Instant::now());
    while since.elapsed() < quiet && began.elapsed() < limit {
        thread::sleep(Duration::from_millis(200));
        let now = counters(op).reconciles;
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    since
}

#[test]
#[ignore = "benchmark: run by bench/operator.sh"]
fn operator_scale() {
    let runs = env_usize("BENCH_OPERATOR_RUNS", 5);
    let count = env_usize("BENCH_OPERATOR_BURST", 300);
    let out_dir = std::env::var_os("BENCH_OPERATOR_OUT").map(PathBuf::from);

    let kube = KubeApi::start();
    kube.kubectl(&["apply", "--server-side", "-f", CRDS]);
    kube.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/registries.dockyard.dev",
    ]);
    let mut setup = String::new();
    let mut namespaces = vec![
        "bench-one".to_owned(),
        "bench-apps".to_owned(),
        "burst-apps".to_owned(),
    ];
    namespaces.extend((0..BURST_NAMESPACES).map(|i| format!("burst-{i}")));
    for ns in &namespaces {
        let _ = write!(
            setup,
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: pw, namespace: {ns}}}\nstringData: {{alice: bench-password}}\n"
        );
    }
    let applied = kube.apply("setup.yaml", &setup);
    assert!(applied.status.success(), "setup: {}", applied.stderr);

    let mut op = start_operator(&kube);
    op.wait_ready("leading");
    let pid = op.child.as_ref().unwrap().id();
    let startup = op.started.elapsed();
    thread::sleep(Duration::from_secs(1));
    let rss_start = proc_kib(pid, "VmRSS");
    eprintln!(
        "bench: operator ready (leading) in {startup:.1?}, RSS {:.1} MiB",
        mib(rss_start)
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(kube.kubeconfig_path()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    });

    // Warm kubectl's discovery cache for the Registry kind, so run 1 does not pay for it alone.
    kube.kubectl(&["get", "registries", "-A"]);

    // One Registry at a time.
    let mut one = Vec::new();
    for i in 1..=runs {
        settle(&op, Duration::from_secs(2), Duration::from_secs(60));
        let name = format!("one-{i}");
        let run = rt.block_on(one_registry(&kube, &client, &name));
        eprintln!(
            "bench: {name}: done {:.3}s (kubectl exited {:.3}s, Registry stored {:.3}s, stored -> done {:.3}s)",
            run.done,
            run.kubectl,
            run.stored,
            run.done - run.stored
        );
        one.push(run);
    }

    // The burst.
    settle(&op, Duration::from_secs(3), Duration::from_secs(120));
    let rss_idle = proc_kib(pid, "VmRSS");
    let hwm_before = proc_kib(pid, "VmHWM");
    // Reset the peak (VmHWM) so it reflects the burst only.
    let reset = fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let (cpu0, c0) = (proc_cpu_s(pid), counters(&op));
    eprintln!(
        "bench: burst of {count}: idle RSS {:.1} MiB, peak so far {:.1} MiB",
        mib(rss_idle),
        mib(hwm_before)
    );
    let burst_began = Instant::now();
    let b = rt.block_on(burst(&kube, &client, count));
    let peak_done = proc_kib(pid, "VmHWM");
    let (cpu1, c1) = (proc_cpu_s(pid), counters(&op));
    let settled = settle(&op, Duration::from_secs(3), Duration::from_secs(300));
    let settled_s = settled.duration_since(burst_began).as_secs_f64();
    let (cpu2, c2) = (proc_cpu_s(pid), counters(&op));
    let (peak, rss_after) = (proc_kib(pid, "VmHWM"), proc_kib(pid, "VmRSS"));

    let log = op.log();
    let mut levels: BTreeMap<&str, usize> = BTreeMap::new();
    for line in log.lines() {
        for level in [" WARN ", " ERROR "] {
            if line.contains(level) {
                *levels.entry(level.trim()).or_default() += 1;
            }
        }
    }

    let mut t = Table(String::new());
    t.head(&format!(
        "operator: one Registry (a user from a Secret, pullSecrets in another namespace, selfSigned TLS), median of {runs}"
    ));
    let done: Vec<f64> = one.iter().map(|r| r.done).collect();
    t.row(
        "kubectl apply -> children + status (s)",
        median(&done),
        Some(TARGET_ONE_S),
    );
    t.row(
        "  of which kubectl apply ran (s)",
        median(&one.iter().map(|r| r.kubectl).collect::<Vec<_>>()),
        None,
    );
    t.row(
        "  Registry stored -> done (s)",
        median(&one.iter().map(|r| r.done - r.stored).collect::<Vec<_>>()),
        None,
    );
    t.note(&format!(
        "runs (s): {}",
        done.iter()
            .map(|d| format!("{d:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    t.head(&format!(
        "operator: {count} Registries in one kubectl apply ({BURST_NAMESPACES} namespaces, every other one with a user and a pull Secret elsewhere)"
    ));
    t.row(
        "kubectl apply -> all children + status (s)",
        b.done.unwrap_or(f64::NAN),
        Some(TARGET_BURST_S),
    );
    t.row("  of which kubectl apply ran (s)", b.kubectl, None);
    t.row(
        "  all statuses written (s)",
        b.statuses.unwrap_or(f64::NAN),
        None,
    );
    t.row(
        "operator RSS at start, no Registries (MiB)",
        mib(rss_start),
        None,
    );
    t.row(
        "operator RSS idle before the burst (MiB)",
        mib(rss_idle),
        None,
    );
    t.row(
        if reset {
            "operator peak RSS, burst until settled (MiB)"
        } else {
            "operator peak RSS, whole run (MiB)"
        },
        mib(peak),
        Some(TARGET_PEAK_MIB),
    );
    t.row("  peak when all were done (MiB)", mib(peak_done), None);
    t.row(
        "operator RSS after the burst settled (MiB)",
        mib(rss_after),
        None,
    );
    t.row("operator CPU during the burst (s)", cpu1 - cpu0, None);
    t.row("reconciles until done", c1.reconciles - c0.reconciles, None);
    t.row(
        "reconciles until settled",
        c2.reconciles - c0.reconciles,
        None,
    );
    let (dsum, dcount) = (
        c2.duration_sum - c0.duration_sum,
        c2.duration_count - c0.duration_count,
    );
    t.row(
        "mean reconcile duration (ms)",
        if dcount > 0.0 {
            1000.0 * dsum / dcount
        } else {
            f64::NAN
        },
        None,
    );
    t.row("reconcile failures", c2.failures - c0.failures, None);
    t.row("reconciles stopped after (s)", settled_s, None);
    t.note(&format!(
        "operator CPU until settled {:.1} s; log lines WARN {} ERROR {}; start-up to ready {startup:.1?}",
        cpu2 - cpu0,
        levels.get("WARN").unwrap_or(&0),
        levels.get("ERROR").unwrap_or(&0)
    ));
    if b.done.is_none() {
        t.note(&format!(
            "burst NOT done within {BURST_TIMEOUT:?}: {}/{count} statuses written, {} children missing",
            b.observed, b.missing_children
        ));
    }
    t.note(
        "no kubelet runs: Ready stays False; the measure is children created and status written",
    );
    println!("{}", t.0);

    if let Some(dir) = out_dir {
        fs::create_dir_all(&dir).expect("create BENCH_OPERATOR_OUT");
        fs::write(dir.join("results.txt"), &t.0).expect("write results");
        fs::write(dir.join("operator.log"), &log).expect("write operator log");
        let _ = fs::copy(kube.dir().join("apiserver.log"), dir.join("apiserver.log"));
    }
    let (status, took) = op.terminate();
    eprintln!("bench: operator exited {status} in {took:.1?}");
}
