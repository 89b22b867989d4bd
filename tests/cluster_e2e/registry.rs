//! Registries on the real cluster: `examples/registry.yaml` comes up Ready because its pod runs
//! and passes its probes; skopeo pushes over TLS to the Service's ClusterIP from the host,
//! trusting only the operator's CA; the generated pull Secret works as an authfile as it is and
//! cannot push or delete; images and trust survive deleting and re-creating the Registry and a
//! crash mid-push; and a second server-side apply changes nothing.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::cmd::{Outcome, cmd, run_capture};
use crate::common::oci::write_oci_layout;
use crate::fixture::{Cluster, cluster, condition, is_true, repo, secret_value};

const USER: &str = "alice";
const PASSWORD: &str = "change-me-please";

/// A Registry that is up, and how a client on the host reaches it.
pub struct Deployed<'a> {
    pub c: &'a Cluster,
    pub ns: String,
    pub name: String,
    /// A cert dir trusting only the Registry's CA.
    pub trust: PathBuf,
    /// The pull Secret's `.dockerconfigjson`, written unmodified.
    pub authfile: PathBuf,
    /// `<ClusterIP>:5000`, read from the Service by `wait_ready`.
    addr: std::cell::RefCell<String>,
}

/// The Registry `name` in namespace `ns` with one user, a self-signed CA, a claim and a pull
/// Secret in its own namespace, applied server-side; waits until it is Ready.
pub fn deploy<'a>(c: &'a Cluster, ns: &str, name: &str) -> Deployed<'a> {
    c.apply(&format!("{ns}-{name}.yaml"), &registry_yaml(ns, name));
    let d = Deployed::find(c, ns, name);
    d.wait_ready();
    d
}

fn registry_yaml(ns: &str, name: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: users, namespace: {ns}}}
stringData: {{{USER}: {PASSWORD}}}
---
apiVersion: dockyard.dev/v1alpha1
kind: Registry
metadata: {{name: {name}, namespace: {ns}}}
spec:
  storage:
    filesystem: {{size: 1Gi}}
    deleteEnabled: true
  auth:
    users:
      - username: {USER}
        passwordSecretRef: {{name: users, key: {USER}}}
  pullSecrets:
    namespaces: [{ns}]
"#
    )
}

impl<'a> Deployed<'a> {
    pub fn find(c: &'a Cluster, ns: &str, name: &str) -> Deployed<'a> {
        let dir = c.path(&format!("clients/{ns}-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        Deployed {
            c,
            ns: ns.to_owned(),
            name: name.to_owned(),
            trust: dir.join("trust"),
            authfile: dir.join("pull-secret.json"),
            addr: Default::default(),
        }
    }

    /// Waits for the Registry's Ready condition (for its current generation), then reads the
    /// address, CA and pull Secret a client uses.
    pub fn wait_ready(&self) -> Value {
        let registry = self.c.wait_for(
            &format!("Registry {}/{} Ready", self.ns, self.name),
            Duration::from_secs(120),
            || {
                let r = self.c.get(&["registry", "-n", &self.ns, &self.name])?;
                let current = r["status"]["observedGeneration"] == r["metadata"]["generation"];
                (current && is_true(&r, "Ready")).then_some(r)
            },
        );
        let ca = self
            .c
            .get(&["secret", "-n", &self.ns, &format!("{}-ca", self.name)])
            .expect("the CA Secret");
        // kube-proxy programs the Service's new endpoint a moment after the pod is Ready.
        let svc = self
            .c
            .get(&["service", "-n", &self.ns, &self.name])
            .expect("the registry's Service");
        let addr = format!("{}:5000", svc["spec"]["clusterIP"].as_str().unwrap());
        *self.addr.borrow_mut() = addr.clone();
        self.c.wait_for(
            &format!("{addr} to accept connections"),
            Duration::from_secs(30),
            || {
                let sock: std::net::SocketAddr = addr.parse().ok()?;
                std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(1)).ok()
            },
        );
        std::fs::create_dir_all(&self.trust).unwrap();
        std::fs::write(self.trust.join("ca.crt"), secret_value(&ca, "ca.crt")).unwrap();
        let pull = self
            .c
            .get(&["secret", "-n", &self.ns, &format!("{}-pull", self.name)])
            .expect("the pull Secret");
        std::fs::write(&self.authfile, secret_value(&pull, ".dockerconfigjson")).unwrap();
        registry
    }

    /// `<ClusterIP>:5000`, as nodes and the host reach it (known once `wait_ready` returned).
    pub fn addr(&self) -> String {
        let addr = self.addr.borrow().clone();
        assert!(!addr.is_empty(), "addr() before wait_ready()");
        addr
    }

    fn skopeo(&self, args: &[&str]) -> Outcome {
        let trust = self.trust.to_string_lossy().into_owned();
        let mut all = vec![
            "--src-cert-dir",
            trust.as_str(),
            "--dest-cert-dir",
            trust.as_str(),
        ];
        all.extend_from_slice(args);
        let mut c = cmd("skopeo", ["copy"]);
        c.args(&all);
        run_capture(&mut c)
    }

    /// Pushes a small two-layer image as `reference` with the user's credentials.
    pub fn push_small(&self, reference: &str) {
        let layout = self.c.path("clients/layout");
        if !layout.join("index.json").exists() {
            write_oci_layout(&layout, "small", &[200_000, 1_000_000]);
        }
        let creds = format!("{USER}:{PASSWORD}");
        let out = self.skopeo(&[
            "--dest-creds",
            &creds,
            &format!("oci:{}:small", layout.display()),
            &format!("docker://{}/{reference}", self.addr()),
        ]);
        assert!(out.status.success(), "push {reference}: {}", out.stderr);
    }

    /// Pulls `reference` with the pull Secret as the authfile, unmodified.
    pub fn pull(&self, reference: &str) {
        let out = self.try_pull(reference);
        assert!(out.status.success(), "pull {reference}: {}", out.stderr);
    }

    pub fn try_pull(&self, reference: &str) -> Outcome {
        let dest = self.c.path(&format!(
            "clients/pulled-{}",
            reference.replace(['/', ':'], "-")
        ));
        let _ = std::fs::remove_dir_all(&dest);
        self.skopeo(&[
            "--src-authfile",
            &self.authfile.to_string_lossy(),
            &format!("docker://{}/{reference}", self.addr()),
            &format!("oci:{}:x", dest.display()),
        ])
    }
}

#[test]
fn the_example_registry_comes_up_and_serves_pushes_and_pulls_through_its_service() {
    let (_turn, c) = cluster();
    let began = Instant::now();
    c.kubectl(&[
        "apply",
        "-f",
        &repo().join("examples/registry.yaml").to_string_lossy(),
    ]);
    let wait = c.kubectl_capture(&[
        "wait",
        "--for=condition=Ready",
        "registry/main",
        "-n",
        "registry",
        "--timeout=120s",
    ]);
    let ready_after = began.elapsed();
    assert!(wait.status.success(), "kubectl wait: {}", wait.stderr);
    let reg = Deployed::find(c, "registry", "main");
    let status = reg.wait_ready();
    assert_eq!(status["status"]["readyReplicas"], 1, "{status}");
    assert_eq!(
        status["status"]["observedGeneration"], status["metadata"]["generation"],
        "{status}"
    );
    report_ready_breakdown(c, "registry", "main", ready_after);

    // Its claim (WaitForFirstConsumer) was Pending until the pod was scheduled: normal, and
    // not reported as something blocking the rollout.
    let events = c.get(&["events", "-n", "registry"]).unwrap();
    let claim_pending: Vec<&serde_json::Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "ClaimPending")
        .collect();
    assert!(claim_pending.is_empty(), "{claim_pending:?}");

    // The pod really runs the image under test and passes its probes.
    let pods = c.get(&["pods", "-n", "registry"]).unwrap();
    let pod = &pods["items"][0];
    assert!(is_true(pod, "Ready"), "{pod}");

    // Push over TLS trusting only the operator's CA, with the spec's user.
    reg.push_small("apps/web:1");
    // The pull Secret, as it is, pulls it through the ClusterIP...
    reg.pull("apps/web:1");
    // ...and can neither push nor delete.
    let layout = c.path("clients/layout");
    let denied = reg.skopeo(&[
        "--dest-authfile",
        &reg.authfile.to_string_lossy(),
        &format!("oci:{}:small", layout.display()),
        &format!("docker://{}/apps/web:2", reg.addr()),
    ]);
    assert!(!denied.status.success(), "the pull Secret pushed");
    assert!(
        denied.stderr.contains("denied")
            || denied.stderr.contains("DENIED")
            || denied.stderr.contains("unauthorized"),
        "{}",
        denied.stderr
    );
    let mut delete = cmd("skopeo", ["delete"]);
    delete.args([
        "--cert-dir",
        &reg.trust.to_string_lossy(),
        "--authfile",
        &reg.authfile.to_string_lossy(),
        &format!("docker://{}/apps/web:1", reg.addr()),
    ]);
    let out = run_capture(&mut delete);
    assert!(!out.status.success(), "the pull Secret deleted a tag");
    reg.pull("apps/web:1");

    // The kubelet's probes have been answered all along, and none of them is in the log.
    let pod_name = pod["metadata"]["name"].as_str().unwrap();
    let log = c.kubectl(&["logs", "-n", "registry", pod_name]);
    assert!(
        log.contains("dockyard::access"),
        "no access log at all:\n{log}"
    );
    assert!(
        !log.contains("/healthz"),
        "probe requests in the access log:\n{log}"
    );
}

/// Prints how long `kubectl apply` to Ready took, split at the pod's own milestones.
fn report_ready_breakdown(c: &Cluster, ns: &str, name: &str, total: Duration) {
    let registry = c.get(&["registry", "-n", ns, name]).unwrap();
    let created = registry["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    let pods = c.get(&["pods", "-n", ns]).unwrap();
    let pod = &pods["items"][0];
    let at = |kind: &str| {
        condition(pod, kind)
            .and_then(|c| c["lastTransitionTime"].as_str())
            .unwrap_or("?")
            .to_owned()
    };
    let started = pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    eprintln!(
        "BENCH apply-to-Ready {:.2} s: Registry created {created}, pod created {}, scheduled {}, \
         container started {started}, pod Ready {}, Registry Ready {}",
        total.as_secs_f64(),
        pod["metadata"]["creationTimestamp"].as_str().unwrap_or("?"),
        at("PodScheduled"),
        at("Ready"),
        condition(&registry, "Ready")
            .and_then(|c| c["lastTransitionTime"].as_str())
            .unwrap_or("?"),
    );
}

#[test]
fn deleting_and_recreating_a_registry_keeps_its_images_and_its_ca() {
    let (_turn, c) = cluster();
    let ns = "e2e-recreate";
    let reg = deploy(c, ns, "keep");
    reg.push_small("team/app:1");
    let old_trust = c.ca_dir(
        "recreate-old",
        &std::fs::read(reg.trust.join("ca.crt")).unwrap(),
    );

    c.kubectl(&["delete", "registry", "-n", ns, "keep", "--wait=true"]);
    c.wait_for("the registry pod gone", Duration::from_secs(90), || {
        let pods = c.get(&["pods", "-n", ns, "-l", "app.kubernetes.io/instance=keep"])?;
        pods["items"].as_array()?.is_empty().then_some(())
    });
    assert!(
        c.get(&["pvc", "-n", ns, "keep-data"]).is_some(),
        "the claim was deleted"
    );
    assert!(
        c.get(&["secret", "-n", ns, "keep-ca"]).is_some(),
        "the CA was deleted"
    );

    let reg = deploy(c, ns, "keep");
    // A client holding the old CA still connects, and the image is still there.
    let out = run_capture(Command::new(crate::common::cmd::tool("skopeo")).args([
        "inspect",
        "--cert-dir",
        &old_trust.to_string_lossy(),
        "--authfile",
        &reg.authfile.to_string_lossy(),
        &format!("docker://{}/team/app:1", reg.addr()),
    ]));
    assert!(out.status.success(), "with the old CA: {}", out.stderr);
    reg.pull("team/app:1");
}

#[test]
fn a_second_server_side_apply_of_the_same_registry_changes_nothing() {
    let (_turn, c) = cluster();
    let ns = "e2e-gitops";
    let _reg = deploy(c, ns, "same");
    let before = c.get(&["registry", "-n", ns, "same"]).unwrap();
    let path = c.manifest(&format!("{ns}-same.yaml"), &registry_yaml(ns, "same"));
    let diff = c.kubectl_capture(&[
        "diff",
        "--server-side",
        "--field-manager=e2e",
        "-f",
        &path.to_string_lossy(),
    ]);
    assert!(
        diff.status.success() && diff.stdout.trim().is_empty(),
        "kubectl diff shows drift (exit {}):\n{}\n{}",
        diff.status,
        diff.stdout,
        diff.stderr
    );
    c.apply(&format!("{ns}-same.yaml"), &registry_yaml(ns, "same"));
    std::thread::sleep(Duration::from_secs(2));
    let after = c.get(&["registry", "-n", ns, "same"]).unwrap();
    assert_eq!(
        before["metadata"]["generation"], after["metadata"]["generation"],
        "a second apply changed the spec"
    );
    assert_eq!(
        before["metadata"]["resourceVersion"], after["metadata"]["resourceVersion"],
        "a second apply wrote the object"
    );
}

#[test]
fn a_registry_killed_mid_push_is_restarted_and_the_retried_push_succeeds() {
    let (_turn, c) = cluster();
    let ns = "e2e-crash";
    let reg = deploy(c, ns, "crash");
    let pod_uid = |c: &Cluster| -> (String, i64) {
        let pods = c
            .get(&["pods", "-n", ns, "-l", "app.kubernetes.io/instance=crash"])
            .unwrap();
        let pod = &pods["items"][0];
        (
            pod["metadata"]["uid"].as_str().unwrap().to_owned(),
            pod["status"]["containerStatuses"][0]["restartCount"]
                .as_i64()
                .unwrap_or(0),
        )
    };
    let (uid, restarts) = pod_uid(c);

    // A big layer pushed in the background; the registry process is killed -9 mid-way.
    let layout = c.path("clients/big");
    if !layout.join("index.json").exists() {
        write_oci_layout(&layout, "big", &[192 << 20]);
    }
    let creds = format!("{USER}:{PASSWORD}");
    let trust = reg.trust.to_string_lossy().into_owned();
    // A tag of its own each run, so that a reused cluster cannot already hold it.
    let tag = format!("t{}", std::time::UNIX_EPOCH.elapsed().unwrap().as_millis());
    let target = format!("docker://{}/crash/big:{tag}", reg.addr());
    let src = format!("oci:{}:big", layout.display());
    let push = [
        "--dest-creds",
        creds.as_str(),
        src.as_str(),
        target.as_str(),
    ];
    let mut child = cmd("skopeo", ["copy", "--dest-cert-dir", &trust])
        .args(push)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the layer's upload has bytes on the volume: mid-push, for sure.
    let volume = claim_dir(c, ns, "crash-data");
    let uploads = volume.join("docker/registry/v2/repositories/crash/big/_uploads");
    let deadline = Instant::now() + Duration::from_secs(60);
    while uploading(&uploads).is_none() {
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = registry_pid(&uid).expect("the registry process on the node");
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = child.wait();

    c.wait_for(
        "the kubelet to restart the registry",
        Duration::from_secs(90),
        || {
            let (u, r) = pod_uid(c);
            (u == uid && r > restarts).then_some(())
        },
    );
    reg.wait_ready();
    // Nothing partial is visible: the tag of the interrupted push does not exist.
    let inspect = run_capture(Command::new(crate::common::cmd::tool("skopeo")).args([
        "inspect",
        "--cert-dir",
        &trust,
        "--creds",
        &creds,
        &target,
    ]));
    assert!(
        !inspect.status.success(),
        "the interrupted push left its tag"
    );
    assert!(
        inspect.stderr.contains("manifest unknown"),
        "{}",
        inspect.stderr
    );
    // The retried push succeeds and the image is whole.
    let retried = reg.skopeo(&push);
    assert!(retried.status.success(), "retried push: {}", retried.stderr);
    reg.pull(&format!("crash/big:{tag}"));
}

/// The host directory of the local volume bound to claim `name`.
fn claim_dir(c: &Cluster, ns: &str, name: &str) -> PathBuf {
    let claim = c.get(&["pvc", "-n", ns, name]).expect("the claim");
    let volume = claim["spec"]["volumeName"].as_str().expect("a bound claim");
    let pv = c.get(&["pv", volume]).expect("the volume");
    PathBuf::from(
        pv["spec"]["local"]["path"]
            .as_str()
            .expect("a local volume"),
    )
}

/// Whether an upload session under `uploads` has received bytes.
fn uploading(uploads: &std::path::Path) -> Option<()> {
    std::fs::read_dir(uploads)
        .ok()?
        .flatten()
        .any(|e| std::fs::metadata(e.path().join("data")).is_ok_and(|m| m.len() > 0))
        .then_some(())
}

/// The PID (in this machine's namespace) of the `dockyard serve` process of the pod `uid`.
fn registry_pid(uid: &str) -> Option<i32> {
    let needle = uid.replace('-', "_");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains("serve") {
            continue;
        }
        let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        if cgroup.contains(uid) || cgroup.contains(&needle) {
            return Some(pid);
        }
    }
    None
}
