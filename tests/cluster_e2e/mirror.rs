//! RegistryMirror and node trust on the real cluster: the chart's node agent writes the
//! kubelet's containerd `hosts.toml`, a Pod whose image names an upstream host runs with its
//! layers fetched through the mirror, the status counts the node, a dead mirror falls back
//! to the upstream, deleting the mirror removes exactly the agent's files, and a Registry
//! with `nodeTrust` serves a Pod's image by its ClusterIP over TLS the node trusts.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::cmd::{cmd, run, run_capture};
use crate::common::server::{Server, Target};
use crate::fixture::{Cluster, OPERATOR_NS, cluster, is_true, repo};

/// The host image names use for the upstream; nodes never resolve it (hosts.toml maps it).
const UPSTREAM_HOST: &str = "upstream.test:5000";

/// An OCI archive of a one-binary image that runs (the test bed's pause binary), with bytes
/// of its own appended so that its layer is in no store yet: every pull of it is cold.
fn app_archive(c: &Cluster, name: &str) -> PathBuf {
    let dir = c.path("images");
    std::fs::create_dir_all(&dir).unwrap();
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let binary = dir.join(format!("{name}-{nonce}"));
    let mut bytes = std::fs::read(repo().join(".tools/cluster-images/pause")).unwrap();
    bytes.extend_from_slice(nonce.as_bytes());
    std::fs::write(&binary, bytes).unwrap();
    let out = dir.join(format!("{name}-{nonce}.tar"));
    run(Command::new("python3").args([
        repo().join("tests/cluster/mkimage.py").as_os_str(),
        binary.as_os_str(),
        "/app".as_ref(),
        format!("example.test/{name}:1").as_ref(),
        out.as_os_str(),
    ]));
    out
}

/// Copies `archive` to `dest` (a `docker://` reference) with skopeo.
fn push(archive: &std::path::Path, dest: &str, extra: &[&str]) {
    let mut c = cmd("skopeo", ["copy"]);
    c.args(extra)
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("docker://{dest}"));
    let out = run_capture(&mut c);
    assert!(out.status.success(), "push {dest}: {}", out.stderr);
}

/// A Pod running `image`; waits until it runs and returns how long that took.
pub fn run_pod(
    c: &Cluster,
    ns: &str,
    name: &str,
    image: &str,
    pull_secret: Option<&str>,
) -> Duration {
    let secrets = pull_secret
        .map(|s| format!("  imagePullSecrets: [{{name: {s}}}]\n"))
        .unwrap_or_default();
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{secrets}  containers: [{{name: app, image: \"{image}\", imagePullPolicy: Always}}]\n  terminationGracePeriodSeconds: 1\n"
    );
    let began = Instant::now();
    c.apply(&format!("pod-{ns}-{name}.yaml"), &yaml);
    c.wait_for(
        &format!("pod {ns}/{name} running {image}"),
        Duration::from_secs(120),
        || {
            let pod = c.get(&["pod", name, "-n", ns])?;
            (pod["status"]["phase"] == "Running").then_some(())
        },
    );
    began.elapsed()
}

/// The node's containerd log from byte `from` on.
pub fn containerd_log(c: &Cluster, from: usize) -> String {
    let log = std::fs::read_to_string(c.dir.join("logs/containerd.log")).unwrap_or_default();
    log.get(from..).unwrap_or_default().to_owned()
}

/// Asserts containerd decoded every hosts.toml it read since byte `from` of its log (a file it
/// cannot decode is ignored, and the pull goes straight to the image's host).
pub fn assert_hosts_toml_decoded(c: &Cluster, from: usize) {
    let log = containerd_log(c, from);
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("failed to decode hosts.toml"))
        .collect();
    assert!(
        failures.is_empty(),
        "containerd refused a hosts.toml: {failures:?}"
    );
}

/// Deletes what an earlier, failed run left in `ns` (on a reused cluster).
pub fn fresh_namespace(c: &Cluster, ns: &str) {
    c.kubectl(&[
        "delete",
        "namespace",
        ns,
        "--ignore-not-found",
        "--timeout=120s",
    ]);
}

/// Waits until `addr` (a ClusterIP and port) accepts connections from the host: kube-proxy
/// programs a Service's endpoint a moment after its pod is Ready.
fn wait_accepts(c: &Cluster, addr: &str) {
    c.wait_for(
        &format!("{addr} to accept connections"),
        Duration::from_secs(30),
        || {
            let sock: std::net::SocketAddr = addr.parse().ok()?;
            std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(1)).ok()
        },
    );
}

pub fn delete_pod(c: &Cluster, ns: &str, name: &str) {
    c.kubectl(&[
        "delete",
        "pod",
        name,
        "-n",
        ns,
        "--wait=true",
        "--timeout=60s",
    ]);
}

fn mirror_yaml(url: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: mirrors}}
---
apiVersion: dockyard.dev/v1alpha1
kind: RegistryMirror
metadata: {{name: edge, namespace: mirrors}}
spec:
  upstreams:
    - host: "{UPSTREAM_HOST}"
      url: "{url}"
      insecure: true
  replicas: 1
  cache:
    storage: {{size: 1Gi}}
  nodes:
    runtimes: [containerd]
"#
    )
}

/// The RegistryMirror `mirrors/edge` as stored, once `check` holds for it.
fn wait_mirror(c: &Cluster, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    c.wait_for(what, Duration::from_secs(120), || {
        c.get(&["registrymirror", "edge", "-n", "mirrors"])
            .filter(|m| check(m))
    })
}

pub fn hosts_toml(c: &Cluster, host: &str) -> PathBuf {
    PathBuf::from(&c.env["MC_CERTS_D"])
        .join(host)
        .join("hosts.toml")
}

#[test]
fn a_mirror_configures_the_node_and_pods_pull_through_it_with_fallback() {
    let (_turn, c) = cluster();
    fresh_namespace(c, "mirrors");
    // The upstream: a registry on the host, reached by pods at the bridge's address.
    let upstream = Server::builder()
        .target(Target::Dockyard)
        .all_interfaces()
        .start();
    let port = upstream.addr.rsplit(':').next().unwrap().to_owned();
    let upstream_url = format!("http://{}:{port}", c.env["MC_NODE_IP"]);
    let app = app_archive(c, "app");
    for tag in ["1", "2"] {
        push(
            &app,
            &format!("{}/library/app:{tag}", upstream.addr),
            &["--dest-tls-verify=false"],
        );
    }
    // Someone else's containerd config, which the agent must leave alone.
    let foreign = hosts_toml(c, "foreign.test");
    std::fs::create_dir_all(foreign.parent().unwrap()).unwrap();
    let foreign_text = "server = \"https://foreign.test\"\n# not Dockyard's\n";
    std::fs::write(&foreign, foreign_text).unwrap();

    let began = Instant::now();
    c.apply("mirror.yaml", &mirror_yaml(&upstream_url));
    wait_mirror(c, "NodesConfigured 1/1", |m| {
        is_true(m, "NodesConfigured") && m["status"]["nodes"]["summary"] == "1/1"
    });
    let configured_after = began.elapsed();
    let m = wait_mirror(c, "mirror Ready", |m| is_true(m, "Ready"));
    let ready_after = began.elapsed();
    eprintln!(
        "RegistryMirror apply -> nodes configured {configured_after:?}, Ready {ready_after:?}"
    );
    assert_eq!(m["status"]["upstreams"], UPSTREAM_HOST);
    let printed = c.kubectl(&["get", "registrymirrors", "-n", "mirrors"]);
    assert!(
        printed.contains("NODES") && printed.contains("1/1"),
        "{printed}"
    );

    // The kubelet's containerd reads the hosts.toml the agent wrote: the mirror at its
    // ClusterIP first, the upstream kept as the server.
    let endpoint = m["status"]["endpoint"].as_str().unwrap().to_owned();
    wait_accepts(c, &endpoint);
    let written = std::fs::read_to_string(hosts_toml(c, UPSTREAM_HOST)).expect("hosts.toml");
    assert!(written.contains("Dockyard"), "{written}");
    assert!(
        written.contains(&format!("server = \"{upstream_url}\"")),
        "{written}"
    );
    assert!(
        written.contains(&format!("[host.\"https://{endpoint}\"]")),
        "{written}"
    );

    // A Pod naming the upstream host runs, its layers fetched through the mirror.
    let log_from = containerd_log(c, 0).len();
    let pulled_in = run_pod(
        c,
        "mirrors",
        "app1",
        &format!("{UPSTREAM_HOST}/library/app:1"),
        None,
    );
    eprintln!("pod through the mirror running after {pulled_in:?}");
    let log = c.kubectl(&["logs", "deploy/edge", "-n", "mirrors"]);
    let blob_gets = log
        .lines()
        .filter(|l| l.contains("/v2/library/app/blobs/sha256:") && l.contains("\"GET\""))
        .count();
    assert!(
        blob_gets >= 2,
        "the mirror served the config and layer:\n{log}"
    );
    assert_hosts_toml_decoded(c, log_from);
    delete_pod(c, "mirrors", "app1");

    // The mirror is down: the node falls back to the upstream (kube-proxy refuses the
    // ClusterIP at once when no pod backs it).
    c.kubectl(&[
        "patch",
        "registrymirror",
        "edge",
        "-n",
        "mirrors",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":0}}"#,
    ]);
    c.wait_for("no mirror pods", Duration::from_secs(60), || {
        let pods = c.get(&[
            "pods",
            "-n",
            "mirrors",
            "-l",
            "app.kubernetes.io/name=dockyard-mirror",
        ])?;
        pods["items"].as_array()?.is_empty().then_some(())
    });
    let fallback_in = run_pod(
        c,
        "mirrors",
        "app2",
        &format!("{UPSTREAM_HOST}/library/app:2"),
        None,
    );
    eprintln!("pod with the mirror down running after {fallback_in:?}");
    // containerd resolves the tag with a HEAD; the layers are in its store already.
    let resolved = [
        upstream.access_lines("HEAD", "/v2/library/app/manifests/2"),
        upstream.access_lines("GET", "/v2/library/app/manifests/2"),
    ]
    .concat();
    assert!(
        !resolved.is_empty(),
        "resolved at the upstream directly:\n{}",
        upstream.log()
    );
    delete_pod(c, "mirrors", "app2");

    // Deleting the mirror removes the agent's files and nothing else.
    c.kubectl(&[
        "delete",
        "registrymirror",
        "edge",
        "-n",
        "mirrors",
        "--timeout=60s",
    ]);
    c.wait_for(
        "the agent removed its hosts.toml",
        Duration::from_secs(60),
        || (!hosts_toml(c, UPSTREAM_HOST).exists()).then_some(()),
    );
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), foreign_text);
    let plans = c.kubectl(&[
        "get",
        "configmaps",
        "-n",
        OPERATOR_NS,
        "-l",
        "dockyard.dev/node-plan=true",
        "-o",
        "name",
    ]);
    assert!(plans.trim().is_empty(), "plan withdrawn: {plans}");
    std::fs::remove_dir_all(foreign.parent().unwrap()).unwrap();
    c.kubectl(&["delete", "namespace", "mirrors", "--timeout=120s"]);
}

#[test]
fn a_registry_with_node_trust_serves_a_pods_image_by_its_cluster_ip() {
    let (_turn, c) = cluster();
    fresh_namespace(c, "trusted");
    let yaml = r#"apiVersion: v1
kind: Namespace
metadata: {name: trusted}
---
apiVersion: v1
kind: Secret
metadata: {name: users, namespace: trusted}
stringData: {alice: change-me-please}
---
apiVersion: dockyard.dev/v1alpha1
kind: Registry
metadata: {name: private, namespace: trusted}
spec:
  storage: {filesystem: {size: 1Gi}}
  auth:
    users: [{username: alice, passwordSecretRef: {name: users, key: alice}}]
  pullSecrets: {namespaces: [trusted]}
  nodeTrust: true
  nodes: {runtimes: [containerd]}
"#;
    c.apply("trusted.yaml", yaml);
    let r = c.wait_for(
        "Registry Ready with its node configured",
        Duration::from_secs(120),
        || {
            let r = c.get(&["registry", "private", "-n", "trusted"])?;
            (is_true(&r, "Ready") && r["status"]["nodes"]["summary"] == "1/1").then_some(r)
        },
    );
    let endpoint = r["status"]["endpoint"].as_str().unwrap().to_owned();
    wait_accepts(c, &endpoint);
    let ca = crate::fixture::secret_value(
        &c.get(&["secret", "private-ca", "-n", "trusted"]).unwrap(),
        "ca.crt",
    );
    let trust = c.ca_dir("trusted", &ca);
    let app = app_archive(c, "app");
    push(
        &app,
        &format!("{endpoint}/team/app:1"),
        &[
            "--dest-cert-dir",
            &trust.to_string_lossy(),
            "--dest-creds",
            "alice:change-me-please",
        ],
    );
    // The kubelet pulls it by the ClusterIP, over TLS with the CA the agent installed.
    let log_from = containerd_log(c, 0).len();
    let written = std::fs::read_to_string(hosts_toml(c, &endpoint)).expect("hosts.toml");
    assert!(
        written.contains(&format!("server = \"https://{endpoint}\"")),
        "{written}"
    );
    run_pod(
        c,
        "trusted",
        "app",
        &format!("{endpoint}/team/app:1"),
        Some("private-pull"),
    );
    assert_hosts_toml_decoded(c, log_from);
    delete_pod(c, "trusted", "app");
    c.kubectl(&["delete", "namespace", "trusted", "--timeout=120s"]);
    c.wait_for(
        "the agent removed the trust",
        Duration::from_secs(60),
        || (!hosts_toml(c, &endpoint).exists()).then_some(()),
    );
}
