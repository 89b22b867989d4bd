//! Online garbage collection on a real S3 engine (MinIO) with two replicas of `dockyard
//! serve` on one bucket:
//! - a soak: both replicas collect every second or two while workers push images (sharing
//!   base layers that fall out of use and come back), pull them back through the other replica, and delete some; no request may
//!   fail with BLOB_UNKNOWN or MANIFEST_BLOB_UNKNOWN, every live tag must pull whole at the
//!   end, and the collections must have freed the deleted images' layers;
//! - `dockyard garbage-collect --dry-run` and a real run, against a bucket distribution 2.8.2
//!   can read afterwards.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dockyard_testkit::http::{self, Response};
use dockyard_testkit::minio::Minio;
use dockyard_testkit::server::{Server, Target};
use sha2::{Digest as _, Sha256};

const BUCKET: &str = "registry";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn replica(minio: &Minio, extra: &[(&str, &str)]) -> Server {
    Server::builder()
        .envs(minio.registry_env(BUCKET, Some("/soak")))
        .env("REGISTRY_STORAGE_DELETE_ENABLED", "true")
        .envs(extra.iter().copied())
        .start()
}

/// Counts of what the workers did and what went wrong.
#[derive(Default)]
struct Tally {
    pushes: AtomicUsize,
    pulls: AtomicUsize,
    deletes: AtomicUsize,
    requests: AtomicUsize,
    /// Base layers uploaded (not found by HEAD): more than one per base means collections
    /// took bases that fell out of use, and pushes came back to them.
    base_uploads: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
}

/// One registry request, counted; a transport error is a failure.
fn send(
    tally: &Tally,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Response> {
    tally.requests.fetch_add(1, Ordering::Relaxed);
    match http::request(addr, method, path, headers, body) {
        Ok(r) => Some(r),
        Err(e) => {
            tally.fail(format!("{method} {path} on {addr}: {e}"));
            None
        }
    }
}

/// GET a blob, following a redirect to the bucket.
fn get_blob(tally: &Tally, addr: &str, repo: &str, d: &str) -> Option<Response> {
    let resp = send(
        tally,
        addr,
        "GET",
        &format!("/v2/{repo}/blobs/{d}"),
        &[],
        &[],
    )?;
    if resp.status != 307 {
        return Some(resp);
    }
    let location = resp.header("location").unwrap_or_default().to_owned();
    let rest = location.strip_prefix("http://").unwrap_or(&location);
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    send(tally, host, "GET", path, &[], &[])
}

/// Pushes blob bytes the way clients do: HEAD first, upload only if missing.
fn push_blob(tally: &Tally, addr: &str, repo: &str, bytes: &[u8]) -> Option<String> {
    let d = digest(bytes);
    let head = send(
        tally,
        addr,
        "HEAD",
        &format!("/v2/{repo}/blobs/{d}"),
        &[],
        &[],
    )?;
    if head.status == 200 {
        return Some(d);
    }
    if bytes.len() == 256 * 1024 {
        tally.base_uploads.fetch_add(1, Ordering::Relaxed);
    }
    let post = send(
        tally,
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
        &[("Content-Type", "application/octet-stream")],
        bytes,
    )?;
    if post.status != 201 {
        tally.fail(format!(
            "POST blob {d} to {repo}: {} {}",
            post.status,
            post.text()
        ));
        return None;
    }
    Some(d)
}

struct Image {
    manifest: Vec<u8>,
    blobs: Vec<Vec<u8>>,
}

/// An image: the shared base layer, a layer of its own, and a config.
fn image(base: &[u8], worker: usize, n: usize) -> Image {
    let own: Vec<u8> = (0..96 * 1024)
        .map(|i| (i as u8) ^ (worker as u8) ^ (n as u8).rotate_left(3))
        .chain(format!("{worker}/{n}").into_bytes())
        .collect();
    let config = format!(r#"{{"architecture":"amd64","os":"linux","worker":{worker},"n":{n}}}"#)
        .into_bytes();
    let layer = |b: &[u8]| {
        format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}"#,
            digest(b),
            b.len()
        )
    };
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{},{}]}}"#,
        digest(&config),
        config.len(),
        layer(base),
        layer(&own)
    )
    .into_bytes();
    Image {
        manifest,
        blobs: vec![config, base.to_vec(), own],
    }
}

fn push_image(tally: &Tally, addr: &str, repo: &str, tag: &str, img: &Image) -> bool {
    for blob in &img.blobs {
        if push_blob(tally, addr, repo, blob).is_none() {
            return false;
        }
    }
    let Some(put) = send(
        tally,
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", MANIFEST)],
        &img.manifest,
    ) else {
        return false;
    };
    if put.status != 201 {
        tally.fail(format!(
            "PUT manifest {repo}:{tag}: {} {}",
            put.status,
            put.text()
        ));
        return false;
    }
    true
}

/// Pulls a tag and checks every byte; `what` names the failure.
fn pull_image(tally: &Tally, addr: &str, repo: &str, tag: &str, img: &Image) {
    let Some(got) = send(
        tally,
        addr,
        "GET",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Accept", MANIFEST)],
        &[],
    ) else {
        return;
    };
    if got.status != 200 || got.body != img.manifest {
        tally.fail(format!(
            "GET manifest {repo}:{tag} on {addr}: {} {}",
            got.status,
            got.text()
        ));
        return;
    }
    for blob in &img.blobs {
        let d = digest(blob);
        match get_blob(tally, addr, repo, &d) {
            Some(r) if r.status == 200 && r.body == *blob => {}
            Some(r) => tally.fail(format!(
                "GET blob {d} of {repo}:{tag} on {addr}: {} {}",
                r.status,
                r.text()
            )),
            None => {}
        }
    }
}

#[test]
fn online_gc_during_concurrent_pushes_and_pulls_on_two_replicas_loses_nothing() {
    if !Minio::available("online gc soak") {
        return;
    }
    let minio = Minio::start();
    minio.create_bucket(BUCKET);
    let gc = [
        ("REGISTRY_STORAGE_MAINTENANCE_GC_ENABLED", "true"),
        ("REGISTRY_STORAGE_MAINTENANCE_GC_INTERVAL", "1500ms"),
        ("REGISTRY_STORAGE_MAINTENANCE_GC_GRACE", "4s"),
        ("REGISTRY_STORAGE_MAINTENANCE_GC_DELETEUNTAGGED", "true"),
        ("REGISTRY_LOG_LEVEL", "info"),
    ];
    let mut redirected = gc.to_vec();
    redirected.push(("REGISTRY_STORAGE_REDIRECT_DISABLE", "false"));
    let mut streamed = gc.to_vec();
    streamed.push(("REGISTRY_STORAGE_REDIRECT_DISABLE", "true"));
    let replicas = [replica(&minio, &redirected), replica(&minio, &streamed)];
    let addrs: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();

    let soak = Duration::from_secs(
        std::env::var("DOCKYARD_SOAK_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(75),
    );
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    // Each worker owns its tags, so it knows which exist: any failure is the registry's.
    let live: Arc<Mutex<BTreeMap<(usize, usize), Image>>> = Arc::default();
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (tally, stop, live, addrs) =
                (tally.clone(), stop.clone(), live.clone(), addrs.clone());
            std::thread::spawn(move || {
                let repo = format!("soak/w{w}");
                // Two base layers in turns of 10 s (however fast the machine pushes): by the
                // end of a turn the other base has been unreferenced, and past the 4 s grace
                // window, for a few collections; the next turn's first push finds it by HEAD
                // (or not, if it was collected) and relies on it, racing the collector.
                let bases: Vec<Vec<u8>> = (0..2u8)
                    .map(|b| {
                        (0..256 * 1024)
                            .map(|i| (i * 7 % 251) as u8 ^ b ^ (w as u8) << 2)
                            .collect()
                    })
                    .collect();
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let (push_to, pull_from) = (&addrs[n % 2], &addrs[(n + 1) % 2]);
                    let slot = n % 5;
                    let tag = format!("t{slot}");
                    let turn = started.elapsed().as_secs() / 10;
                    let img = image(&bases[(turn % 2) as usize], w, n);
                    if push_image(&tally, push_to, &repo, &tag, &img) {
                        tally.pushes.fetch_add(1, Ordering::Relaxed);
                        pull_image(&tally, pull_from, &repo, &tag, &img);
                        tally.pulls.fetch_add(1, Ordering::Relaxed);
                        live.lock().unwrap().insert((w, slot), img);
                    }
                    // Now and then an image goes: its manifest and then (by GC) its own layer.
                    if n % 3 == 0 {
                        let gone = (slot + 2) % 5;
                        let removed = live.lock().unwrap().remove(&(w, gone));
                        if let Some(img) = removed {
                            let d = digest(&img.manifest);
                            if let Some(r) = send(
                                &tally,
                                push_to,
                                "DELETE",
                                &format!("/v2/{repo}/manifests/{d}"),
                                &[],
                                &[],
                            ) {
                                if r.status != 202 {
                                    tally.fail(format!(
                                        "DELETE {repo}@{d}: {} {}",
                                        r.status,
                                        r.text()
                                    ));
                                }
                                tally.deletes.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    // Pull another live image of this worker through the other replica.
                    let other = live
                        .lock()
                        .unwrap()
                        .iter()
                        .find(|((ow, os), _)| *ow == w && *os != slot)
                        .map(|((_, os), img)| {
                            (
                                *os,
                                Image {
                                    manifest: img.manifest.clone(),
                                    blobs: img.blobs.clone(),
                                },
                            )
                        });
                    if let Some((os, img)) = other {
                        pull_image(&tally, pull_from, &repo, &format!("t{os}"), &img);
                        tally.pulls.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(soak);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let elapsed = started.elapsed();

    // Past the grace window, two more collections run; then every live tag pulls whole,
    // from both replicas.
    std::thread::sleep(Duration::from_secs(8));
    for ((w, slot), img) in live.lock().unwrap().iter() {
        for addr in &addrs {
            pull_image(
                &tally,
                addr,
                &format!("soak/w{w}"),
                &format!("t{slot}"),
                img,
            );
        }
    }
    let failures = tally.failures.lock().unwrap().clone();
    let logs: Vec<String> = replicas.iter().map(|r| r.log()).collect();
    let runs: usize = logs
        .iter()
        .map(|l| l.matches("garbage collection done").count())
        .sum();
    let freed: usize = logs
        .iter()
        .flat_map(|l| l.lines())
        .filter(|l| l.contains("garbage collection done"))
        .filter_map(|l| {
            l.split("blobs_deleted=")
                .nth(1)?
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    eprintln!(
        "soak: {:.0?}: {} pushes, {} pulls, {} deletes, {} requests, {} base layer uploads; {} collections deleted {} blobs; {} failures",
        elapsed,
        tally.pushes.load(Ordering::Relaxed),
        tally.pulls.load(Ordering::Relaxed),
        tally.deletes.load(Ordering::Relaxed),
        tally.requests.load(Ordering::Relaxed),
        tally.base_uploads.load(Ordering::Relaxed),
        runs,
        freed,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures, first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        tally.pushes.load(Ordering::Relaxed) >= 20,
        "the soak did too little to mean anything"
    );
    assert!(
        runs >= 10,
        "garbage collection ran only {runs} times:\n{}",
        logs.join("\n")
    );
    assert!(
        freed > 0,
        "no collection freed anything: deleted images' layers were never collected"
    );
    assert!(
        tally.base_uploads.load(Ordering::Relaxed) > 8,
        "no base layer was ever collected and pushed again: the soak did not exercise reuse"
    );
    // Both replicas collected, never at once (the lock): each says so in its log.
    for log in &logs {
        assert!(
            log.contains("garbage collection done"),
            "a replica never took the collector's lock:\n{log}"
        );
    }
    // The deleted images' own layers are gone from the bucket; live ones remain.
    let keys = minio.list_keys(BUCKET, "soak/docker/registry/v2/blobs/");
    let live_blobs: Vec<String> = live
        .lock()
        .unwrap()
        .values()
        .flat_map(|img| img.blobs.iter().map(|b| digest(b)))
        .collect();
    for d in &live_blobs {
        let hex = d.trim_start_matches("sha256:");
        assert!(
            keys.iter().any(|k| k.ends_with(&format!("{hex}/data"))),
            "live blob {d} missing from the bucket"
        );
    }
    let data_keys = keys.iter().filter(|k| k.ends_with("/data")).count();
    assert!(
        data_keys < tally.pushes.load(Ordering::Relaxed) + 10,
        "{data_keys} blobs in the bucket after {} pushes: collection does not keep up",
        tally.pushes.load(Ordering::Relaxed)
    );
}

#[test]
fn garbage_collect_command_dry_run_then_real_and_distribution_reads_the_result() {
    if !Minio::available("garbage-collect command") {
        return;
    }
    let minio = Minio::start();
    minio.create_bucket(BUCKET);
    let mut server = replica(&minio, &[]);
    let tally = Tally::default();
    let base: Vec<u8> = b"base".repeat(1000);
    let keep = image(&base, 1, 1);
    let drop = image(&base, 2, 2);
    assert!(push_image(&tally, &server.addr, "app", "keep", &keep));
    assert!(push_image(&tally, &server.addr, "app", "drop", &drop));
    // Untag "drop" by pointing it at "keep"'s manifest: its manifest is now untagged.
    let put = http::request(
        &server.addr,
        "PUT",
        "/v2/app/manifests/drop",
        &[("Content-Type", MANIFEST)],
        &keep.manifest,
    )
    .unwrap();
    assert_eq!(put.status, 201);
    server.stop();

    let gc = |args: &[&str]| {
        let mut cmd = std::process::Command::new(dockyard_testkit::dockyard_bin());
        cmd.arg("garbage-collect").args(args);
        for (k, v) in minio.registry_env(BUCKET, Some("/soak")) {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "garbage-collect {args:?} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let own_layer = digest(&drop.blobs[2]);
    let dry = gc(&["--dry-run", "--delete-untagged", "--grace", "0s"]);
    assert!(
        dry.contains(&format!("blob eligible for deletion: {own_layer}")),
        "{dry}"
    );
    assert!(
        dry.contains(&format!(
            "app: manifest eligible for deletion: {}",
            digest(&drop.manifest)
        )),
        "{dry}"
    );
    let keys_before = minio.list_keys(BUCKET, "soak/");
    assert!(
        keys_before
            .iter()
            .any(|k| k.contains(own_layer.trim_start_matches("sha256:")))
    );
    // Within the default grace window (1h) nothing just pushed goes.
    let young = gc(&["--delete-untagged"]);
    assert!(
        young.contains("0 blobs and 0 manifests eligible for deletion"),
        "{young}"
    );
    let real = gc(&["--delete-untagged", "--grace", "0s"]);
    assert!(
        real.contains(&format!("deleted blob: {own_layer}")),
        "{real}"
    );
    let keys_after = minio.list_keys(BUCKET, "soak/");
    let own_data = format!("{}/data", own_layer.trim_start_matches("sha256:"));
    assert!(
        !keys_after.iter().any(|k| k.ends_with(&own_data)),
        "the untagged image's layer is still in the bucket"
    );
    assert!(
        !keys_after.iter().any(|k| k.ends_with("gc.lock")),
        "the collector's lock was left behind"
    );

    // distribution 2.8.2 serves what is left, byte for byte.
    let reference = Server::builder()
        .target(Target::Distribution)
        .envs(minio.distribution_env(BUCKET, Some("/soak")))
        .start();
    let tally = Tally::default();
    pull_image(&tally, &reference.addr, "app", "keep", &keep);
    pull_image(&tally, &reference.addr, "app", "drop", &keep);
    let failures = tally.failures.lock().unwrap();
    assert!(failures.is_empty(), "{failures:?}");
}
