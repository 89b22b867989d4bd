//! `dockyard operator` against a real API server (`common::kube`): the health, readiness and
//! metrics endpoints, reconciles of an applied Registry (and again when a Secret it names
//! changes), leader election through the `dockyard-operator` Lease (a second instance waits as
//! a ready standby, takes over after the leader's SIGTERM, a stolen lease stops and restarts the
//! controller), prompt clean exits, and the CRD's CEL rules rejecting invalid Registries;
//! `resilience` covers an unreadable Registry and a shutdown after the lease Role is gone.

use dockyard_testkit as common;
#[path = "operator_runtime/resilience.rs"]
mod resilience;

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use common::kube::KubeApi;
use common::operator::Operator;

/// Short leases so failover is quick to observe: renewed every 2 s, valid for 4 s.
const LEASE_DURATION: Duration = Duration::from_secs(4);
const LEASE_ARGS: [&str; 4] = [
    "--lease-duration-seconds",
    "4",
    "--lease-grace-seconds",
    "2",
];
const LEASE: &str = "dockyard-operator";

fn lease_holder(kube: &KubeApi) -> String {
    kube.kubectl(&[
        "-n",
        "default",
        "get",
        "lease",
        LEASE,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
}

/// Polls the Lease until `holder` holds it; returns how long that took.
fn wait_holder(kube: &KubeApi, holder: &str, timeout: Duration) -> Duration {
    let began = Instant::now();
    loop {
        let current = lease_holder(kube);
        if current == holder {
            return began.elapsed();
        }
        assert!(
            began.elapsed() < timeout,
            "Lease holder is {current:?}, not {holder:?}, after {timeout:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn install_crds(kube: &KubeApi) {
    let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/dockyard.dev.yaml");
    kube.kubectl(&["apply", "--server-side", "-f", crds]);
    kube.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/registries.dockyard.dev",
    ]);
}

fn registry(name: &str, spec: &str) -> String {
    let spec = spec.trim_end().replace('\n', "\n  ");
    format!(
        "apiVersion: dockyard.dev/v1alpha1\nkind: Registry\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  {spec}\n"
    )
}

#[test]
fn operator_refuses_bad_arguments_before_connecting() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dockyard"))
            .arg("operator")
            .args(args)
            .env_remove("DOCKYARD_IMAGE")
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .output()
            .expect("run dockyard operator");
        assert!(!out.status.success(), "{args:?} accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let missing = run(&[]);
    assert!(missing.contains("--image <IMAGE>"), "{missing}");
    let timing = run(&[
        "--image",
        "example.test/dockyard:dev",
        "--metrics-addr",
        "127.0.0.1:0",
        "--lease-duration-seconds",
        "5",
        "--lease-grace-seconds",
        "5",
    ]);
    assert!(
        timing.contains(
            "error: the lease grace period (5s) must be above 0 and below the lease duration (5s)"
        ),
        "{timing}"
    );
}

#[test]
fn invalid_registries_are_rejected_with_the_cel_message() {
    let kube = KubeApi::start();
    install_crds(&kube);
    let cases = [
        (
            "two-storages",
            "storage:\n  filesystem: {size: 1Gi}\n  s3: {bucket: images}",
            "set only one of storage.filesystem and storage.s3",
        ),
        (
            "two-tls-modes",
            "tls:\n  selfSigned: {}\n  disabled: true",
            "choose one TLS mode: selfSigned, secretRef, certManager or disabled: true",
        ),
        (
            "shared-rwo",
            "replicas: 3\nstorage:\n  filesystem: {accessMode: ReadWriteOnce}",
            "replicas > 1 needs storage every replica can share: set spec.storage.s3, or spec.storage.filesystem.accessMode: ReadWriteMany",
        ),
    ];
    for (name, spec, message) in cases {
        let outcome = kube.apply_when_served(&format!("{name}.yaml"), &registry(name, spec));
        assert!(
            !outcome.status.success(),
            "{name} was accepted: {outcome:?}"
        );
        assert!(
            outcome.stderr.contains(message) && outcome.stderr.contains("Invalid value"),
            "{name}: stderr lacks {message:?}: {}",
            outcome.stderr
        );
        let stored = kube.kubectl_capture(&["get", "registry", name]);
        assert!(
            stored.stderr.contains("NotFound"),
            "{name} was stored: {stored:?}"
        );
    }
    // The same spec made valid is accepted: the rules reject the combination, not the fields.
    let fixed = "replicas: 3\nstorage:\n  filesystem: {accessMode: ReadWriteMany}";
    let accepted = kube.apply_when_served("shared-rwx.yaml", &registry("shared-rwx", fixed));
    assert!(
        accepted.status.success(),
        "valid Registry refused: {accepted:?}"
    );
}

#[test]
fn operator_serves_health_reconciles_and_fails_over() {
    let kube = KubeApi::start();
    install_crds(&kube);

    // Without leader election the controller runs at once and no Lease is created.
    let mut alone = Operator::start(&kube, "operator-alone", &["--leader-election=false"]);
    alone.wait_ready("leading");
    let lease = kube.kubectl_capture(&["-n", "default", "get", "lease", LEASE]);
    assert!(
        lease.stderr.contains("NotFound"),
        "a Lease exists: {lease:?}"
    );
    let (status, _) = alone.terminate();
    assert!(status.success(), "exit: {status}\n{}", alone.log());

    // The first instance takes the Lease and runs the controller.
    let mut first = Operator::start(&kube, "operator-a", &LEASE_ARGS);
    first.wait_until(
        "/healthz",
        common::operator::STARTUP_TIMEOUT,
        |status, body| status == 200 && body.trim() == "ok",
    );
    first.wait_ready("leading");
    let startup = first.started.elapsed();
    eprintln!("operator-a: started to ready (leading) in {startup:.1?}");
    assert_eq!(lease_holder(&kube), "operator-a");
    let (_, metrics) = first.get("/metrics").expect("metrics");
    assert!(metrics.contains("dockyard_operator_leader 1"), "{metrics}");

    // An applied Registry is reconciled and counted.
    kube.kubectl(&[
        "create",
        "secret",
        "generic",
        "alice-password",
        "--from-literal=password=first",
    ]);
    kube.kubectl(&[
        "create",
        "secret",
        "generic",
        "unrelated",
        "--from-literal=x=1",
    ]);
    let spec = "auth:\n  users:\n  - username: alice\n    passwordSecretRef: {name: alice-password, key: password}";
    let applied = kube.apply_when_served("demo.yaml", &registry("demo", spec));
    assert!(applied.status.success(), "apply Registry: {applied:?}");
    first.wait_until("/metrics", Duration::from_secs(30), |_, body| {
        body.contains("dockyard_reconciles_total{kind=\"Registry\"}")
            && body.contains("dockyard_reconcile_duration_seconds_count{kind=\"Registry\"}")
    });
    assert!(first.reconciles() >= 1);

    // Changing the password Secret reconciles the Registry again; an unrelated Secret does not.
    first.settle();
    kube.kubectl(&[
        "patch",
        "secret",
        "unrelated",
        "-p",
        r#"{"stringData":{"x":"2"}}"#,
    ]);
    kube.kubectl(&[
        "patch",
        "secret",
        "alice-password",
        "-p",
        r#"{"stringData":{"password":"second"}}"#,
    ]);
    let line = first.wait_log_line(
        &[
            "related object updated: Secret",
            "alice-password",
            "reconcile started",
        ],
        Duration::from_secs(30),
    );
    assert!(line.contains("demo"), "reconciled object: {line}");
    assert!(
        !first.log().contains("/unrelated."),
        "an unrelated Secret triggered a reconcile:\n{}",
        first.log()
    );

    // A stolen Lease stops the controller; once the thief's lock expires it leads again.
    let before_steal = first.log().matches("acquired the lease").count();
    kube.kubectl(&[
        "-n",
        "default",
        "patch",
        "lease",
        LEASE,
        "--type=merge",
        "-p",
        r#"{"spec":{"holderIdentity":"thief"}}"#,
    ]);
    first.wait_log_line(&["lost the lease"], LEASE_DURATION * 3);
    first.wait_log_line(&["controller stopped"], LEASE_DURATION * 3);
    let regained = Instant::now();
    loop {
        if first.log().matches("acquired the lease").count() > before_steal {
            break;
        }
        assert!(
            regained.elapsed() < LEASE_DURATION * 4,
            "never led again after the steal:\n{}",
            first.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
    first.wait_ready("leading");
    wait_holder(&kube, "operator-a", LEASE_DURATION);

    // A second instance is a ready standby and does not hold the Lease.
    let mut second = Operator::start(&kube, "operator-b", &LEASE_ARGS);
    let standby = second.wait_ready("standby");
    eprintln!("operator-b: ready as standby in {standby:.1?}");
    let (_, metrics) = second.get("/metrics").expect("metrics");
    assert!(metrics.contains("dockyard_operator_leader 0"), "{metrics}");
    thread::sleep(LEASE_DURATION);
    assert_eq!(lease_holder(&kube), "operator-a");
    assert!(
        second
            .get("/readyz")
            .is_some_and(|(_, b)| b.trim() == "ok: standby")
    );

    // SIGTERM: the leader drains, releases the Lease and exits 0; the standby takes over.
    let (status, exit) = first.terminate();
    assert!(
        status.success(),
        "operator-a exit: {status}\n{}",
        first.log()
    );
    eprintln!("operator-a: exited {status} {exit:.1?} after SIGTERM");
    let takeover = wait_holder(&kube, "operator-b", LEASE_DURATION + Duration::from_secs(3));
    let leading = second.wait_ready("leading");
    eprintln!(
        "failover: operator-b holds the Lease {:.1?} after operator-a exited, runs the controller after {:.1?}",
        takeover,
        takeover + leading
    );
    assert!(first.log().contains("lease released"), "{}", first.log());

    // The new leader reconciles too: a new Registry is counted by operator-b.
    let before = second.reconciles();
    let applied = kube.apply_when_served("demo2.yaml", &registry("demo2", "replicas: 0"));
    assert!(applied.status.success(), "apply Registry: {applied:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while second.reconciles() <= before {
        assert!(
            Instant::now() < deadline,
            "operator-b never reconciled:\n{}",
            second.log()
        );
        thread::sleep(Duration::from_millis(100));
    }

    let rss = fs::read_to_string(format!(
        "/proc/{}/status",
        second.child.as_ref().expect("running").id()
    ))
    .unwrap_or_default()
    .lines()
    .find(|l| l.starts_with("VmRSS:"))
    .map(str::to_owned)
    .unwrap_or_default();
    eprintln!("operator-b (leader, 2 Registries): {rss}");

    let (status, exit) = second.terminate();
    assert!(
        status.success(),
        "operator-b exit: {status}\n{}",
        second.log()
    );
    eprintln!("operator-b: exited {status} {exit:.1?} after SIGTERM");
    assert_eq!(lease_holder(&kube), "", "the Lease was not released");
}
