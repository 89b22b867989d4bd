//! The S3 test harness itself, against a real engine: MinIO (built by `tests/setup.sh` from
//! `tools/minio`) on one drive and as a 4-drive erasure set, driven with the testkit's own
//! SigV4 requests, and the reference registry, distribution 2.8.2, storing pushed images in a
//! MinIO bucket (with and without a root directory) where the tests find its layout's keys.
//!
//! Without a `minio` binary these tests print why and pass, unless `CI` is set: then they fail.

use dockyard_testkit as common;

use std::path::Path;
use std::time::SystemTime;

use common::minio::{Minio, SigningInput, files_under, sign};
use common::oci::{self, ImageInfo};
use common::registry::{push_layout, skopeo_copy};
use common::{Server, Target};
use tempfile::TempDir;

/// Put, get, list (with paging), delete and overwrite on a fresh bucket.
fn round_trip(minio: &Minio) {
    minio.create_bucket("harness");
    let keys = [
        "a/one",
        "a/two words+plus",
        "a/deeper/three~é",
        "a/empty",
        "b/other",
    ];
    for (i, key) in keys.iter().enumerate() {
        let body = match *key {
            "a/empty" => Vec::new(),
            _ => oci::random_bytes(i as u64, 1000 + i * 70_000),
        };
        minio.put_object("harness", key, &body);
        assert_eq!(
            minio.get_object("harness", key).as_deref(),
            Some(&body[..]),
            "{key}"
        );
    }
    let mut under_a: Vec<String> = keys
        .iter()
        .filter(|k| k.starts_with("a/"))
        .map(|k| k.to_string())
        .collect();
    under_a.sort();
    assert_eq!(minio.list_keys("harness", "a/"), under_a);
    // Two keys a page: three ListObjectsV2 requests joined by continuation tokens.
    assert_eq!(minio.list_keys_paged("harness", "a/", 2), under_a);
    assert_eq!(minio.list_keys("harness", "").len(), keys.len());
    assert!(minio.list_keys("harness", "nothing/").is_empty());

    minio.put_object("harness", "a/one", b"replaced");
    assert_eq!(
        minio.get_object("harness", "a/one").as_deref(),
        Some(&b"replaced"[..])
    );
    minio.delete_object("harness", "a/two words+plus");
    assert_eq!(minio.get_object("harness", "a/two words+plus"), None);
    assert!(
        !minio
            .list_keys("harness", "a/")
            .contains(&"a/two words+plus".to_string())
    );
    assert_eq!(minio.get_object("harness", "never/written"), None);

    // A request signed with another secret is refused: the signatures above were checked.
    let signed = sign(
        &SigningInput {
            method: "GET",
            host: minio.addr(),
            path: "/harness/a/one",
            query: &[],
            body: b"",
            access_key: minio.access_key(),
            secret_key: "not-the-secret",
            region: minio.region(),
        },
        SystemTime::now(),
    );
    let headers: Vec<(&str, &str)> = signed
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let resp = common::http::request(minio.addr(), "GET", &signed.target, &headers, b"").unwrap();
    assert!(
        resp.text().contains("SignatureDoesNotMatch"),
        "{}",
        resp.text()
    );
    assert_eq!(resp.status, 403, "{}", resp.text());
}

fn report_rss(minio: &Minio, what: &str) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", minio.pid())).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or("");
    eprintln!(
        "minio {what}: {}",
        rss.split_whitespace().collect::<Vec<_>>()[1..].join(" ")
    );
}

#[test]
fn minio_single_drive_round_trip() {
    if !Minio::available("minio_single_drive_round_trip") {
        return;
    }
    let minio = Minio::start();
    assert_eq!(minio.endpoint(), format!("http://{}", minio.addr()));
    assert!(minio.endpoint().starts_with("http://127.0.0.1:"));
    round_trip(&minio);
    // The objects are on the one drive (each object is a directory holding xl.meta).
    let files = files_under(&minio.drives()[0]);
    assert!(
        files.iter().any(|f| f.starts_with("harness/a/one/")),
        "{files:#?}"
    );
    report_rss(&minio, "1 drive");
}

#[test]
fn minio_erasure_set_round_trip() {
    if !Minio::available("minio_erasure_set_round_trip") {
        return;
    }
    let minio = Minio::start_erasure();
    assert!(minio.log().contains("4 drives per set"), "{}", minio.log());
    round_trip(&minio);
    // Every object is spread over all four drives.
    assert_eq!(minio.drives().len(), 4);
    for drive in minio.drives() {
        let files = files_under(drive);
        assert!(
            files.iter().any(|f| f.starts_with("harness/a/one/")),
            "{}: {files:#?}",
            drive.display()
        );
    }
    report_rss(&minio, "4-drive erasure set");
}

/// Pushes an image to `server` as `name:tag` with skopeo, pulls it back and checks it.
fn push_and_pull(server: &Server, name: &str, tag: &str) -> (TempDir, ImageInfo) {
    let layout = TempDir::new().unwrap();
    // 12 MiB: more than the S3 driver's 10 MiB chunk, so a multipart upload of two parts.
    let image = oci::write_oci_layout(layout.path(), tag, &[300_000, 12 << 20]);
    let remote = push_layout(server, &[], layout.path(), tag, &format!("{name}:{tag}"));
    let pulled = TempDir::new().unwrap();
    skopeo_copy(
        &[],
        &remote,
        &format!("oci:{}:{tag}", pulled.path().display()),
    );
    oci::assert_same_image(layout.path(), pulled.path(), &image.manifest_digest);
    (layout, image)
}

fn blob_key(prefix: &str, digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap();
    format!(
        "{prefix}docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    )
}

/// The keys distribution's layout puts in the bucket for `image` pushed as `name:tag`.
fn assert_layout_in_bucket(
    minio: &Minio,
    bucket: &str,
    prefix: &str,
    name: &str,
    tag: &str,
    image: &ImageInfo,
    layout: &Path,
) {
    let keys = minio.list_keys(bucket, "");
    assert!(
        keys.iter().all(|k| k.starts_with(prefix)),
        "keys outside {prefix:?}: {keys:#?}"
    );
    let mut digests = vec![image.manifest_digest.clone(), image.config_digest.clone()];
    digests.extend(image.layer_digests.iter().cloned());
    for digest in &digests {
        let key = blob_key(prefix, digest);
        assert!(keys.contains(&key), "no {key} in {keys:#?}");
        let stored = minio.get_object(bucket, &key).unwrap();
        assert_eq!(
            stored,
            oci::layout_blob(layout, digest),
            "{key} differs from the pushed blob"
        );
    }
    let tag_link = format!(
        "{prefix}docker/registry/v2/repositories/{name}/_manifests/tags/{tag}/current/link"
    );
    assert!(keys.contains(&tag_link), "no {tag_link} in {keys:#?}");
    assert_eq!(
        minio.get_object(bucket, &tag_link).unwrap(),
        image.manifest_digest.as_bytes()
    );
    let hex = image.manifest_digest.strip_prefix("sha256:").unwrap();
    let revision = format!(
        "{prefix}docker/registry/v2/repositories/{name}/_manifests/revisions/sha256/{hex}/link"
    );
    assert!(keys.contains(&revision), "no {revision} in {keys:#?}");
}

#[test]
fn distribution_stores_images_in_minio() {
    if !Minio::available("distribution_stores_images_in_minio") {
        return;
    }
    let minio = Minio::start();
    minio.create_bucket("registry");
    let server = Server::builder()
        .target(Target::Distribution)
        .envs(minio.distribution_env("registry", None))
        .start();
    let (layout, image) = push_and_pull(&server, "team/app", "v1");
    assert_layout_in_bucket(
        &minio,
        "registry",
        "",
        "team/app",
        "v1",
        &image,
        layout.path(),
    );
    assert!(
        files_under(&server.data_dir).is_empty(),
        "distribution wrote to its filesystem directory too"
    );
    // Finished upload sessions are removed from the bucket.
    let sessions: Vec<String> = minio
        .list_keys("registry", "")
        .into_iter()
        .filter(|k| k.contains("/_uploads/"))
        .collect();
    assert!(sessions.is_empty(), "{sessions:#?}");
}

/// distribution 2.8.2 under a root directory, on an erasure set, with the environment meant
/// for Dockyard too (`FORCEPATHSTYLE`, which 2.8.2 ignores); deleting the manifest shows
/// `storage.delete.enabled` survived `REGISTRY_STORAGE=s3` replacing the storage section.
#[test]
fn distribution_on_minio_erasure_with_root_directory() {
    if !Minio::available("distribution_on_minio_erasure_with_root_directory") {
        return;
    }
    let minio = Minio::start_erasure();
    minio.create_bucket("registry");
    let server = Server::builder()
        .target(Target::Distribution)
        .envs(minio.registry_env("registry", Some("/dockyard/root")))
        .delete_enabled(true)
        .start();
    let (layout, image) = push_and_pull(&server, "library/app", "1.0");
    assert_layout_in_bucket(
        &minio,
        "registry",
        "dockyard/root/",
        "library/app",
        "1.0",
        &image,
        layout.path(),
    );
    let reference = format!("docker://{}/library/app:1.0", server.addr);
    common::run(&mut common::cmd(
        "skopeo",
        ["delete", "--tls-verify=false", &reference],
    ));
    let keys = minio.list_keys("registry", "dockyard/root/docker/registry/v2/repositories/");
    let hex = image.manifest_digest.strip_prefix("sha256:").unwrap();
    assert!(
        !keys
            .iter()
            .any(|k| k.contains(&format!("_manifests/revisions/sha256/{hex}/"))),
        "the manifest's revision link survived its deletion: {keys:#?}"
    );
    assert!(
        !keys
            .iter()
            .any(|k| k.contains("_manifests/tags/1.0/current/")),
        "the tag survived its manifest's deletion: {keys:#?}"
    );
    // Blobs stay until garbage collection.
    assert!(
        minio
            .get_object(
                "registry",
                &blob_key("dockyard/root/", &image.manifest_digest)
            )
            .is_some()
    );
}
