//! A Registry on S3 scaled out on the real cluster: two replicas on one MinIO bucket (MinIO on
//! the host, at the bridge address pods reach), TLS from the operator's self-signed CA and an
//! htpasswd user. skopeo pushes through the Service's ClusterIP and the objects appear in the
//! bucket; the kubelet runs a Pod from the image (node trust, pull Secret); the replica that
//! opened the upload session of a second push is deleted while that push runs, and the push
//! through the Service still succeeds (skopeo is run once more if it failed, and the test says
//! so: so far it never has, the survivor carrying on with the session the deleted pod opened);
//! each replica, the survivor first, serves the same digests; the PodDisruptionBudget guards the
//! pair; and the replicas run the online garbage collection the spec asks for (`gc.interval:
//! 1m`, `grace: 10m`, the CRD's minimums), which keeps every blob in use.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::cmd::{Outcome, cmd, run, run_capture};
use crate::common::minio::Minio;
use crate::fixture::{Cluster, cluster, is_true, repo};
use crate::mirror::{
    assert_hosts_toml_decoded, containerd_log, delete_pod, fresh_namespace, hosts_toml, run_pod,
};
use crate::registry::Deployed;

const NS: &str = "e2e-s3";
const NAME: &str = "shared";
const BUCKET: &str = "registry";
/// `spec.storage.s3.rootDirectory`: every key the registry writes starts with it.
const ROOT: &str = "e2e";
const USER: &str = "alice";
const PASSWORD: &str = "change-me-please";
const SELECTOR: &str = "app.kubernetes.io/instance=shared";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn registry_yaml(endpoint: &str, minio: &Minio) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: minio-keys, namespace: {NS}}}
stringData: {{accessKey: {access}, secretKey: {secret}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: users, namespace: {NS}}}
stringData: {{{USER}: {PASSWORD}}}
---
apiVersion: dockyard.dev/v1alpha1
kind: Registry
metadata: {{name: {NAME}, namespace: {NS}}}
spec:
  replicas: 2
  storage:
    deleteEnabled: true
    s3:
      bucket: {BUCKET}
      endpoint: {endpoint}
      region: {region}
      forcePathStyle: true
      rootDirectory: {ROOT}
      credentialsSecretRef: {{name: minio-keys}}
      gc: {{interval: 1m, grace: 10m}}
  auth:
    users: [{{username: {USER}, passwordSecretRef: {{name: users, key: {USER}}}}}]
  pullSecrets: {{namespaces: [{NS}]}}
  nodeTrust: true
  nodes: {{runtimes: [containerd]}}
"#,
        access = minio.access_key(),
        secret = minio.secret_key(),
        region = minio.region(),
    )
}

/// A runnable one-layer image (the test bed's pause binary with `noise` pseudo-random bytes
/// appended, which a static binary ignores) as an OCI archive, and the digests a registry
/// must end up holding for it.
#[derive(Clone)]
struct Image {
    archive: PathBuf,
    /// The manifest's digest, computed from the archive's bytes.
    manifest: String,
    /// The config's and the layer's digests.
    blobs: Vec<String>,
}

fn image(c: &Cluster, name: &str, noise: usize) -> Image {
    let dir = c.path("images");
    std::fs::create_dir_all(&dir).unwrap();
    let nonce = uuid::Uuid::new_v4();
    let binary = dir.join(format!("{name}-{}", nonce.simple()));
    let mut bytes = std::fs::read(repo().join(".tools/cluster-images/pause")).unwrap();
    let mut x = (nonce.as_u128() as u64) | 1;
    bytes.reserve(noise);
    while bytes.len() < noise {
        // xorshift64: incompressible, and cheap for a few MiB.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&binary, &bytes).unwrap();
    let archive = dir.join(format!("{name}-{}.tar", nonce.simple()));
    run(Command::new("python3").args([
        repo().join("tests/cluster/mkimage.py").as_os_str(),
        binary.as_os_str(),
        "/app".as_ref(),
        format!("example.test/{name}:1").as_ref(),
        archive.as_os_str(),
    ]));
    std::fs::remove_file(&binary).unwrap();
    // The digests as the archive has them: index.json names the manifest, which names the rest.
    let mut files = std::collections::HashMap::new();
    let mut tar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if path == "index.json" || entry.header().size().unwrap() < 1 << 20 {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            files.insert(path, bytes);
        }
    }
    let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let blob = |digest: &str| &files[&format!("blobs/sha256/{}", &digest["sha256:".len()..])];
    let manifest: Value = serde_json::from_slice(blob(&manifest_digest)).unwrap();
    let mut blobs = vec![manifest["config"]["digest"].as_str().unwrap().to_owned()];
    for layer in manifest["layers"].as_array().unwrap() {
        blobs.push(layer["digest"].as_str().unwrap().to_owned());
    }
    assert_eq!(sha256(blob(&manifest_digest)), manifest_digest);
    Image {
        archive,
        manifest: manifest_digest,
        blobs,
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The key of a blob's bytes in the bucket (distribution's layout under the root directory).
fn blob_key(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    format!(
        "{ROOT}/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    )
}

fn tag_link_key(repository: &str, tag: &str) -> String {
    format!(
        "{ROOT}/docker/registry/v2/repositories/{repository}/_manifests/tags/{tag}/current/link"
    )
}

/// skopeo pushes `image` as `reference` through the Service with the user's credentials;
/// returns skopeo's outcome and the digest file it wrote.
fn push(reg: &Deployed, image: &Image, reference: &str) -> (Outcome, PathBuf) {
    let digest_file = reg.c.path(&format!(
        "clients/{}.digest",
        reference.replace(['/', ':'], "-")
    ));
    let _ = std::fs::remove_file(&digest_file);
    let mut c = cmd("skopeo", ["copy"]);
    c.arg("--dest-cert-dir")
        .arg(&reg.trust)
        .args(["--dest-creds", &format!("{USER}:{PASSWORD}")])
        .arg("--digestfile")
        .arg(&digest_file)
        // As the archive has it (skopeo would otherwise gzip the layer): the digests to
        // find in the bucket are known before the push.
        .arg("--preserve-digests")
        .arg(format!("oci-archive:{}", image.archive.display()))
        .arg(format!("docker://{}/{reference}", reg.addr()));
    (run_capture(&mut c), digest_file)
}

fn assert_pushed(out: &Outcome, digest_file: &Path, image: &Image, reference: &str) {
    assert!(out.status.success(), "push {reference}: {}", out.stderr);
    let pushed = std::fs::read_to_string(digest_file).expect("skopeo's digest file");
    assert_eq!(pushed.trim(), image.manifest, "{reference} pushed as is");
}

/// The registry's pods that are not being deleted.
fn registry_pods(c: &Cluster) -> Vec<Value> {
    let pods = c.get(&["pods", "-n", NS, "-l", SELECTOR]).unwrap();
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .cloned()
        .collect()
}

fn pod_name(pod: &Value) -> String {
    pod["metadata"]["name"].as_str().unwrap().to_owned()
}

/// The Registry Ready with `replicas` ready replicas, and exactly that many pods, each
/// Running and Ready on this node (none terminating).
fn wait_scaled_out(c: &Cluster, reg: &Deployed) -> Vec<Value> {
    c.wait_for(
        "Registry Ready with 2/2 replicas and its node configured",
        Duration::from_secs(180),
        || {
            let r = c.get(&["registry", NAME, "-n", NS])?;
            let current = r["status"]["observedGeneration"] == r["metadata"]["generation"];
            (current
                && is_true(&r, "Ready")
                && r["status"]["readyReplicas"] == 2
                && r["status"]["nodes"]["summary"] == "1/1")
                .then_some(())
        },
    );
    let pods = c.wait_for(
        "two registry pods Running and Ready, none terminating",
        Duration::from_secs(60),
        || {
            let all = c.get(&["pods", "-n", NS, "-l", SELECTOR])?;
            let all = all["items"].as_array()?.clone();
            let ready = all.len() == 2
                && all.iter().all(|p| {
                    p["metadata"]["deletionTimestamp"].is_null()
                        && p["status"]["phase"] == "Running"
                        && is_true(p, "Ready")
                });
            ready.then_some(all)
        },
    );
    for pod in &pods {
        assert_eq!(pod["spec"]["nodeName"], c.env["MC_NODE"].as_str(), "{pod}");
    }
    reg.wait_ready();
    pods
}

/// A registry pod's JSON log lines, parsed (lines that are not JSON are skipped).
fn log_events(c: &Cluster, pod: &str) -> Vec<Value> {
    c.kubectl(&["logs", "-n", NS, pod])
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The requests in `pod`'s access log whose URI has `path` in it, as `METHOD URI STATUS`
/// (none once its log is gone).
fn requests_for(c: &Cluster, pod: &str, path: &str) -> Vec<String> {
    let out = c.kubectl_capture(&["logs", "-n", NS, pod]);
    out.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["target"] == "dockyard::access")
        .filter(|e| e["span"]["uri"].as_str().is_some_and(|u| u.contains(path)))
        .map(|e| {
            let span = &e["span"];
            let uri = span["uri"].as_str().unwrap_or("?");
            format!(
                "{} {} {}",
                span["method"].as_str().unwrap_or("?"),
                uri,
                e["status"]
            )
        })
        .collect()
}

fn with_message<'a>(events: &'a [Value], message: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["message"] == message).collect()
}

/// Pulls `repository:tag` from one pod, by its IP, over TLS verified with the Registry's CA
/// for the Service's name (`curl --resolve`): the manifest's bytes must hash to `image`'s
/// digest, and every blob it names to its own.
fn pull_from_pod(
    c: &Cluster,
    reg: &Deployed,
    pod_ip: &str,
    repository: &str,
    tag: &str,
    image: &Image,
) {
    let host = format!("{NAME}.{NS}.svc");
    let dir = c.path(&format!("clients/from-{pod_ip}"));
    std::fs::create_dir_all(&dir).unwrap();
    let get = |path: &str, accept: &str| -> Vec<u8> {
        let out = dir.join("body");
        let _ = std::fs::remove_file(&out);
        let code = run(Command::new("curl").args([
            "-sS",
            "--max-time",
            "60",
            "--resolve",
            &format!("{host}:5000:{pod_ip}"),
            "--cacert",
            &reg.trust.join("ca.crt").to_string_lossy(),
            "-u",
            &format!("{USER}:{PASSWORD}"),
            "-H",
            &format!("Accept: {accept}"),
            "-o",
            &out.to_string_lossy(),
            "-w",
            "%{http_code}",
            &format!("https://{host}:5000{path}"),
        ]));
        let body = std::fs::read(&out).unwrap_or_default();
        assert_eq!(
            code.trim(),
            "200",
            "GET {path} from {pod_ip}: {}",
            String::from_utf8_lossy(&body[..body.len().min(500)])
        );
        body
    };
    let manifest = get(&format!("/v2/{repository}/manifests/{tag}"), OCI_MANIFEST);
    assert_eq!(sha256(&manifest), image.manifest, "manifest from {pod_ip}");
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    let mut named = vec![manifest["config"]["digest"].as_str().unwrap().to_owned()];
    named.extend(
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned()),
    );
    assert_eq!(named, image.blobs);
    for digest in &named {
        let blob = get(&format!("/v2/{repository}/blobs/{digest}"), "*/*");
        assert_eq!(&sha256(&blob), digest, "blob from {pod_ip}");
    }
}

fn assert_in_bucket(minio: &Minio, keys: &[String], image: &Image, repository: &str, tag: &str) {
    for digest in image.blobs.iter().chain([&image.manifest]) {
        assert!(
            keys.contains(&blob_key(digest)),
            "no {} in the bucket: {keys:#?}",
            blob_key(digest)
        );
    }
    let link = minio
        .get_object(BUCKET, &tag_link_key(repository, tag))
        .unwrap_or_else(|| panic!("no tag link for {repository}:{tag}: {keys:#?}"));
    assert_eq!(String::from_utf8_lossy(&link), image.manifest);
}

#[test]
fn two_replicas_on_one_bucket_serve_pods_and_survive_a_pod_deleted_mid_push() {
    if !Minio::available("s3 scale-out e2e") {
        return;
    }
    let (_turn, c) = cluster();
    fresh_namespace(c, NS);
    let began = Instant::now();
    let minio = Minio::start_on(&c.env["MC_NODE_IP"]);
    minio.create_bucket(BUCKET);
    let small = image(c, "small", 4 << 20);
    let big = image(c, "big", 64 << 20);

    // 1. Two replicas on the bucket come up Ready on the node.
    c.apply("s3.yaml", &registry_yaml(&minio.endpoint(), &minio));
    let reg = Deployed::find(c, NS, NAME);
    let pods = wait_scaled_out(c, &reg);
    let ready_after = began.elapsed();
    let registry = c.get(&["registry", NAME, "-n", NS]).unwrap();
    assert_eq!(
        registry["status"]["storage"],
        format!("s3://{BUCKET}/{ROOT}"),
        "{registry}"
    );
    let deployment = c.get(&["deployment", NAME, "-n", NS]).unwrap();
    assert_eq!(deployment["status"]["readyReplicas"], 2, "{deployment}");
    assert_eq!(
        deployment["spec"]["strategy"]["type"], "RollingUpdate",
        "{deployment}"
    );
    let claims = c.get(&["pvc", "-n", NS]).unwrap();
    assert_eq!(claims["items"], serde_json::json!([]), "no volume on S3");
    let pdb = c
        .get(&["pdb", NAME, "-n", NS])
        .expect("a PodDisruptionBudget");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1, "{pdb}");
    let printed = c.kubectl(&["get", "pdb", "-n", NS]);
    assert!(printed.contains(NAME), "{printed}");

    // The config the pods run collects garbage every minute with a 10-minute grace, and
    // each replica scheduled it.
    let config = c
        .get(&["configmap", &format!("{NAME}-config"), "-n", NS])
        .unwrap();
    let config: serde_yaml::Value =
        serde_yaml::from_str(config["data"]["config.yml"].as_str().unwrap()).unwrap();
    let gc = &config["storage"]["maintenance"]["gc"];
    assert_eq!(gc["enabled"], serde_yaml::Value::Bool(true), "{gc:?}");
    assert_eq!(gc["interval"].as_str(), Some("1m"), "{gc:?}");
    assert_eq!(gc["grace"].as_str(), Some("10m"), "{gc:?}");
    for pod in &pods {
        let events = log_events(c, &pod_name(pod));
        let scheduled = with_message(&events, "online garbage collection scheduled");
        assert_eq!(scheduled.len(), 1, "{}: {events:#?}", pod_name(pod));
        assert_eq!(scheduled[0]["every"], "60s", "{}", scheduled[0]);
        assert_eq!(scheduled[0]["grace"], "600s", "{}", scheduled[0]);
    }

    // 2. A push through the ClusterIP lands in the bucket, and the kubelet runs the image.
    let (out, digest_file) = push(&reg, &small, "scale/app:1");
    assert_pushed(&out, &digest_file, &small, "scale/app:1");
    let keys = minio.list_keys(BUCKET, &format!("{ROOT}/"));
    assert_in_bucket(&minio, &keys, &small, "scale/app", "1");
    let endpoint = reg.addr();
    let written = std::fs::read_to_string(hosts_toml(c, &endpoint)).expect("hosts.toml");
    assert!(
        written.contains(&format!("server = \"https://{endpoint}\"")),
        "{written}"
    );
    let log_from = containerd_log(c, 0).len();
    let pod_in = run_pod(
        c,
        NS,
        "app",
        &format!("{endpoint}/scale/app:1"),
        Some(&format!("{NAME}-pull")),
    );
    assert_hosts_toml_decoded(c, log_from);
    delete_pod(c, NS, "app");

    // 3. The replica serving a second push is deleted as soon as the push has started.
    let push_began;
    let pushing = {
        let reg = Deployed::find(c, NS, NAME);
        reg.wait_ready();
        let big = big.clone();
        push_began = Instant::now();
        std::thread::spawn(move || push(&reg, &big, "scale/big:1"))
    };
    let uploads = format!("{ROOT}/docker/registry/v2/repositories/scale/big/_uploads/");
    c.wait_for(
        "the second push's upload session",
        Duration::from_secs(60),
        || (!minio.list_keys(BUCKET, &uploads).is_empty() || pushing.is_finished()).then_some(()),
    );
    // The access log line of the POST that opened the session names the replica.
    let serving = c.wait_for(
        "the replica that opened the upload",
        Duration::from_secs(30),
        || {
            pods.iter()
                .map(pod_name)
                .find(|p| !requests_for(c, p, "/v2/scale/big/blobs/uploads/").is_empty())
        },
    );
    let in_progress = !pushing.is_finished();
    c.kubectl(&["delete", "pod", &serving, "-n", NS, "--wait=false"]);
    let deleted_at = push_began.elapsed();
    let (first, digest_file) = pushing.join().unwrap();
    let push_took = push_began.elapsed();
    let by_deleted = requests_for(c, &serving, "/v2/scale/big/");
    let retried = !first.status.success();
    if retried {
        eprintln!(
            "the push with {serving} deleted failed; retrying once:\n{}",
            first.stderr
        );
        let (out, digest_file) = push(&reg, &big, "scale/big:1");
        assert_pushed(&out, &digest_file, &big, "scale/big:1");
    } else {
        assert_pushed(&first, &digest_file, &big, "scale/big:1");
    }
    eprintln!(
        "pod {serving} deleted {deleted_at:?} into the push (push still running: {in_progress}); \
         push done after {push_took:?}, retried: {retried}"
    );
    let keys = minio.list_keys(BUCKET, &format!("{ROOT}/"));
    assert_in_bucket(&minio, &keys, &small, "scale/app", "1");
    assert_in_bucket(&minio, &keys, &big, "scale/big", "1");

    // The surviving replica serves both images, byte for byte.
    let survivor = pods
        .iter()
        .find(|p| pod_name(p) != serving)
        .expect("the other replica");
    assert!(
        registry_pods(c)
            .iter()
            .any(|p| pod_name(p) == pod_name(survivor)),
        "the survivor is gone"
    );
    let survivor_ip = survivor["status"]["podIP"].as_str().unwrap().to_owned();
    eprintln!(
        "the second push's requests, by the deleted pod (as far as its log could still be \
         read): {by_deleted:#?}\nby the survivor: {:#?}",
        requests_for(c, &pod_name(survivor), "/v2/scale/big/")
    );
    pull_from_pod(c, &reg, &survivor_ip, "scale/app", "1", &small);
    pull_from_pod(c, &reg, &survivor_ip, "scale/big", "1", &big);

    // The Deployment replaces the deleted pod; the replacement serves the same digests, the
    // budget counts two healthy pods again, and the kubelet runs the image pushed meanwhile.
    let pods = wait_scaled_out(c, &reg);
    assert!(
        pods.iter().all(|p| pod_name(p) != serving),
        "the deleted pod is back: {serving}"
    );
    let replacement = pods
        .iter()
        .find(|p| pod_name(p) != pod_name(survivor))
        .expect("a replacement pod");
    let replacement_ip = replacement["status"]["podIP"].as_str().unwrap();
    pull_from_pod(c, &reg, replacement_ip, "scale/big", "1", &big);
    c.wait_for(
        "the budget to count 2 healthy pods",
        Duration::from_secs(60),
        || {
            let pdb = c.get(&["pdb", NAME, "-n", NS])?;
            let s = &pdb["status"];
            (s["currentHealthy"] == 2 && s["expectedPods"] == 2 && s["disruptionsAllowed"] == 1)
                .then_some(())
        },
    );
    let big_pod_in = run_pod(
        c,
        NS,
        "big",
        &format!("{endpoint}/scale/big:1"),
        Some(&format!("{NAME}-pull")),
    );
    delete_pod(c, NS, "big");

    // 4. A replica collects within a minute (and a few seconds) of starting, through the
    // lock in the bucket; every blob is in use or within grace, so nothing goes.
    let gc_wait = Instant::now();
    let done = c.wait_for(
        "an online garbage collection in a replica",
        Duration::from_secs(120),
        || {
            registry_pods(c).iter().find_map(|p| {
                let events = log_events(c, &pod_name(p));
                with_message(&events, "garbage collection done")
                    .first()
                    .map(|e| (pod_name(p), (*e).clone()))
            })
        },
    );
    eprintln!(
        "garbage collection by {} (waited {:?}): {}",
        done.0,
        gc_wait.elapsed(),
        done.1
    );
    assert_eq!(done.1["blobs_deleted"], 0, "{}", done.1);
    assert_eq!(done.1["manifests_deleted"], 0, "{}", done.1);
    assert_eq!(done.1["dry_run"], false, "{}", done.1);
    let keys = minio.list_keys(BUCKET, &format!("{ROOT}/"));
    assert_in_bucket(&minio, &keys, &small, "scale/app", "1");
    assert_in_bucket(&minio, &keys, &big, "scale/big", "1");
    for pod in registry_pods(c) {
        let warnings: Vec<Value> = log_events(c, &pod_name(&pod))
            .into_iter()
            .filter(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("garbage collection"))
                    && e["level"] != "INFO"
            })
            .collect();
        assert!(warnings.is_empty(), "{}: {warnings:#?}", pod_name(&pod));
    }

    eprintln!(
        "BENCH s3 scale-out: Ready 2/2 after {ready_after:?}, first pod running after {pod_in:?}, \
         pod of the image pushed mid-deletion running after {big_pod_in:?}, total {:?}",
        began.elapsed()
    );
    c.kubectl(&["delete", "namespace", NS, "--timeout=120s"]);
    c.wait_for(
        "the agent removed the trust",
        Duration::from_secs(60),
        || (!hosts_toml(c, &endpoint).exists()).then_some(()),
    );
    drop(minio);
}
