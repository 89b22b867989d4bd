//! Crash safety of the registry under test: the server is SIGKILLed while a large blob upload
//! streams in (through a raw socket this test controls, so the kill lands mid-body
//! deterministically), then restarted on the same data directory. Nothing partial may be
//! visible, every stored blob must hash to its path, a retried upload must succeed, and every
//! image pushed before the crash must still pull bit-identical. A full disk (a small tmpfs)
//! gets a clear 507, keeps nothing partial and gives the space back.

use dockyard_testkit as common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use common::oci::{self, ImageInfo, XorShift};
use common::{Server, cmd, http, run};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

const MIB: u64 = 1 << 20;

/// A large deterministic blob that is generated on the fly, never held in memory.
struct BigBlob {
    seed: u64,
    len: u64,
    digest: String,
}

impl BigBlob {
    fn new(seed: u64, len: u64) -> BigBlob {
        let mut hasher = Sha256::new();
        for_each_chunk(seed, len, |chunk| hasher.update(chunk));
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        BigBlob { seed, len, digest }
    }
}

/// Calls `f` with consecutive chunks of the pseudo-random stream `seed`, `len` bytes in all.
fn for_each_chunk(seed: u64, len: u64, mut f: impl FnMut(&[u8])) {
    let mut rng = XorShift::new(seed);
    let mut buf = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB) as usize;
        rng.fill(&mut buf[..n]);
        f(&buf[..n]);
        left -= n as u64;
    }
}

/// `POST /v2/<name>/blobs/uploads/`; returns the upload URL's path and query.
fn start_upload(server: &Server, name: &str) -> String {
    let path = format!("/v2/{name}/blobs/uploads/");
    let resp = http::request(&server.addr, "POST", &path, &[], &[]).unwrap();
    assert_eq!(resp.status, 202, "POST {path}: {}", resp.text());
    let location = resp
        .header("location")
        .expect("Location header")
        .to_string();
    match location.find("/v2/") {
        Some(start) => location[start..].to_string(),
        None => panic!("odd Location {location:?}"),
    }
}

/// Streams `blob` as a monolithic `PUT <upload>?digest=...`. With `stop_after`, stops writing
/// after that many body bytes and returns the still-open connection without a response.
fn put_blob(
    server: &Server,
    upload: &str,
    blob: &BigBlob,
    stop_after: Option<u64>,
) -> (std::net::TcpStream, Option<http::Response>) {
    let sep = if upload.contains('?') { '&' } else { '?' };
    let path = format!("{upload}{sep}digest={}", blob.digest);
    let mut stream = http::connect(&server.addr).unwrap();
    let headers = [("Content-Type", "application/octet-stream")];
    http::write_head(
        &mut stream,
        &server.addr,
        "PUT",
        &path,
        &headers,
        Some(blob.len),
    )
    .unwrap();
    let limit = stop_after.unwrap_or(blob.len);
    let mut sent = 0u64;
    for_each_chunk(blob.seed, limit, |chunk| {
        stream.write_all(chunk).expect("server accepts the body");
        sent += chunk.len() as u64;
    });
    assert_eq!(sent, limit);
    if stop_after.is_some() {
        return (stream, None);
    }
    let resp = http::read_response(&mut stream, false).unwrap();
    (stream, Some(resp))
}

/// Uploads `blob` completely and asserts the registry accepted it.
fn upload_ok(server: &Server, name: &str, blob: &BigBlob) {
    let upload = start_upload(server, name);
    let (_, resp) = put_blob(server, &upload, blob, None);
    let resp = resp.unwrap();
    assert_eq!(resp.status, 201, "PUT {name} blob: {}", resp.text());
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );
}

fn head_blob(server: &Server, name: &str, digest: &str) -> http::Response {
    let path = format!("/v2/{name}/blobs/{digest}");
    http::request(&server.addr, "HEAD", &path, &[], &[]).unwrap()
}

/// Streams `GET /v2/<name>/blobs/<digest>` into sha256; returns (status, bytes, digest).
fn get_blob_digest(server: &Server, name: &str, digest: &str) -> (u16, u64, String) {
    let mut stream = http::connect(&server.addr).unwrap();
    let path = format!("/v2/{name}/blobs/{digest}");
    http::write_head(&mut stream, &server.addr, "GET", &path, &[], None).unwrap();
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(
            !line.to_ascii_lowercase().starts_with("transfer-encoding"),
            "blob GET should carry a Content-Length, not chunked"
        );
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let mut hasher = Sha256::new();
    let mut n = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let got = std::io::Read::read(&mut reader, &mut buf).unwrap();
        if got == 0 {
            break;
        }
        hasher.update(&buf[..got]);
        n += got as u64;
    }
    (
        status,
        n,
        format!("sha256:{}", hex::encode(hasher.finalize())),
    )
}

/// Walks distribution's blob store and asserts every `data` file hashes to its path; returns
/// the digests found.
fn verify_blob_store(data_dir: &Path) -> Vec<String> {
    let root = data_dir.join("docker/registry/v2/blobs/sha256");
    let mut found = Vec::new();
    if !root.exists() {
        return found;
    }
    for prefix in fs::read_dir(&root).unwrap() {
        for blob_dir in fs::read_dir(prefix.unwrap().path()).unwrap() {
            let blob_dir = blob_dir.unwrap().path();
            let hex = blob_dir.file_name().unwrap().to_string_lossy().into_owned();
            let data = blob_dir.join("data");
            let mut file = fs::File::open(&data)
                .unwrap_or_else(|e| panic!("{} has no readable data: {e}", blob_dir.display()));
            let mut hasher = Sha256::new();
            let mut buf = vec![0; MIB as usize];
            loop {
                let n = file.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            let actual = hex::encode(hasher.finalize());
            assert_eq!(actual, hex, "{} holds other content", data.display());
            found.push(format!("sha256:{hex}"));
        }
    }
    found
}

/// Pushes a few small images and returns them with their repository names.
fn push_images(server: &Server, layout: &Path) -> Vec<(String, ImageInfo)> {
    let mut images = Vec::new();
    for (i, tag) in ["before-a", "before-b", "before-c"].iter().enumerate() {
        let image = oci::write_oci_layout(layout, tag, &[(i + 1) * (100 << 10), 3000]);
        let repo = format!("crash/img{i}");
        let dst = format!("docker://{}/{repo}:v1", server.addr);
        let src = format!("oci:{}:{tag}", layout.display());
        run(&mut cmd(
            "skopeo",
            ["copy", "--dest-tls-verify=false", &src, &dst],
        ));
        images.push((repo, image));
    }
    images
}

/// Asserts every image still pulls with skopeo and is identical to what was pushed.
fn assert_images_pull(server: &Server, layout: &Path, images: &[(String, ImageInfo)]) {
    let out = TempDir::new().unwrap();
    for (repo, image) in images {
        let src = format!("docker://{}/{repo}:v1", server.addr);
        let dst = format!("oci:{}:{}", out.path().display(), repo.replace('/', "-"));
        run(&mut cmd(
            "skopeo",
            ["copy", "--src-tls-verify=false", &src, &dst],
        ));
        oci::assert_same_image(layout, out.path(), &image.manifest_digest);
    }
}

fn assert_stored(store: &[String], images: &[(String, ImageInfo)]) {
    for (_, image) in images {
        for digest in image.layer_digests.iter().chain([&image.config_digest]) {
            assert!(
                store.contains(digest),
                "{digest} missing from the blob store"
            );
        }
    }
}

#[test]
fn kill9_mid_upload_leaves_no_partial_blob() {
    let mut server = Server::start();
    let tmp = TempDir::new().unwrap();
    let images = push_images(&server, tmp.path());
    let blob = BigBlob::new(300, 300 * MIB);

    let upload = start_upload(&server, "crash/big");
    let (connection, _) = put_blob(&server, &upload, &blob, Some(150 * MIB));
    server.kill9();
    drop(connection);
    server.restart();

    let head = head_blob(&server, "crash/big", &blob.digest);
    assert_eq!(
        head.status, 404,
        "a half-uploaded blob is visible after the crash"
    );
    let store = verify_blob_store(&server.data_dir);
    assert!(!store.contains(&blob.digest));
    assert_stored(&store, &images);

    upload_ok(&server, "crash/big", &blob);
    let head = head_blob(&server, "crash/big", &blob.digest);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("314572800"));
    let (status, len, digest) = get_blob_digest(&server, "crash/big", &blob.digest);
    assert_eq!(
        (status, len, digest.as_str()),
        (200, blob.len, blob.digest.as_str())
    );
    assert_images_pull(&server, tmp.path(), &images);
    verify_blob_store(&server.data_dir);
}

#[test]
fn kill9_right_after_the_last_byte_leaves_old_or_new_state() {
    let mut server = Server::start();
    let tmp = TempDir::new().unwrap();
    let images = push_images(&server, tmp.path());
    let blob = BigBlob::new(64, 64 * MIB);

    // The whole body is sent, but the server is killed before it can answer: it may be
    // hashing, syncing or renaming at that instant.
    let upload = start_upload(&server, "crash/last");
    let (connection, _) = put_blob(&server, &upload, &blob, Some(blob.len));
    server.kill9();
    drop(connection);
    server.restart();

    let head = head_blob(&server, "crash/last", &blob.digest);
    match head.status {
        404 => eprintln!("note: the blob was not committed before the kill"),
        200 => {
            let (status, len, digest) = get_blob_digest(&server, "crash/last", &blob.digest);
            assert_eq!(
                (status, len, digest.as_str()),
                (200, blob.len, blob.digest.as_str())
            );
        }
        other => panic!("HEAD after crash answered {other}"),
    }
    let store = verify_blob_store(&server.data_dir);
    assert_stored(&store, &images);

    upload_ok(&server, "crash/last", &blob);
    let (status, len, digest) = get_blob_digest(&server, "crash/last", &blob.digest);
    assert_eq!(
        (status, len, digest.as_str()),
        (200, blob.len, blob.digest.as_str())
    );
    assert_images_pull(&server, tmp.path(), &images);
}

#[test]
fn kill9_mid_chunked_upload_keeps_earlier_chunks_invisible() {
    let mut server = Server::start();
    let blob = BigBlob::new(32, 32 * MIB);
    let first = 8 * MIB;

    // One complete PATCH chunk, then a second PATCH cut off mid-body by the kill.
    let upload = start_upload(&server, "crash/chunked");
    let mut body = Vec::with_capacity(blob.len as usize);
    for_each_chunk(blob.seed, blob.len, |c| body.extend_from_slice(c));
    let range = format!("0-{}", first - 1);
    let headers = [
        ("Content-Type", "application/octet-stream"),
        ("Content-Range", range.as_str()),
    ];
    let resp = http::request(
        &server.addr,
        "PATCH",
        &upload,
        &headers,
        &body[..first as usize],
    )
    .unwrap();
    assert_eq!(resp.status, 202, "PATCH first chunk: {}", resp.text());
    let next = resp.header("location").expect("Location after PATCH");
    let next = &next[next.find("/v2/").expect("Location path")..];
    let mut stream = http::connect(&server.addr).unwrap();
    let rest = &body[first as usize..];
    let range = format!("{first}-{}", blob.len - 1);
    let headers = [
        ("Content-Type", "application/octet-stream"),
        ("Content-Range", range.as_str()),
    ];
    http::write_head(
        &mut stream,
        &server.addr,
        "PATCH",
        next,
        &headers,
        Some(rest.len() as u64),
    )
    .unwrap();
    stream.write_all(&rest[..rest.len() / 2]).unwrap();
    server.kill9();
    drop(stream);
    server.restart();

    assert_eq!(
        head_blob(&server, "crash/chunked", &blob.digest).status,
        404
    );
    let store = verify_blob_store(&server.data_dir);
    assert!(!store.contains(&blob.digest));
    upload_ok(&server, "crash/chunked", &blob);
    let (status, len, digest) = get_blob_digest(&server, "crash/chunked", &blob.digest);
    assert_eq!(
        (status, len, digest.as_str()),
        (200, blob.len, blob.digest.as_str())
    );
}

#[test]
#[should_panic(expected = "holds other content")]
fn blob_store_check_catches_a_corrupt_blob() {
    let tmp = TempDir::new().unwrap();
    let hex = oci::sha256_hex(b"right");
    let dir = tmp
        .path()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(&hex);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("data"), b"wrong").unwrap();
    verify_blob_store(tmp.path());
}

/// A tmpfs of `size` mounted on a new temp dir, unmounted on drop. None when this process
/// may not mount (not root): the caller says so and skips.
struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = TempDir::new().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// Sends `method path` with a `len`-byte body from `seed`, ignoring a refusal mid-body, and
/// reads the answer.
fn send_body(server: &Server, method: &str, path: &str, seed: u64, len: u64) -> http::Response {
    let mut stream = http::connect(&server.addr).unwrap();
    let headers = [("Content-Type", "application/octet-stream")];
    http::write_head(&mut stream, &server.addr, method, path, &headers, Some(len)).unwrap();
    for_each_chunk(seed, len, |chunk| {
        let _ = stream.write_all(chunk);
    });
    http::read_response(&mut stream, false).unwrap()
}

#[test]
fn a_full_disk_answers_507_keeps_nothing_partial_and_gives_the_space_back() {
    let Some(disk) = SmallDisk::mount("24m") else {
        eprintln!("note: skipping the full-disk test: cannot mount a tmpfs (needs root)");
        return;
    };
    let server = Server::builder().data_dir(disk.dir.path()).start();
    let layout = TempDir::new().unwrap();
    let images = push_images(&server, layout.path());
    let big = BigBlob::new(507, 40 * MIB);
    let full = |resp: &http::Response, what: &str| {
        assert_eq!(resp.status, 507, "{what}: {}", resp.text());
        let doc: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(doc["errors"][0]["code"], "UNKNOWN", "{what}");
        let message = doc["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("storage is full"), "{what}: {message}");
        assert!(
            !message.contains(&disk.dir.path().display().to_string()),
            "{message}"
        );
    };
    // A single-request upload, then a chunk of a session: both refused.
    let path = format!("/v2/full/blob/blobs/uploads/?digest={}", big.digest);
    full(
        &send_body(&server, "POST", &path, big.seed, big.len),
        "POST ?digest=",
    );
    let upload = start_upload(&server, "full/blob");
    full(
        &send_body(&server, "PATCH", &upload, big.seed, big.len),
        "PATCH",
    );
    assert!(
        server.log().contains("no space left"),
        "the log says why and where: {}",
        server.log()
    );
    // Nothing partial is visible, the single-request session is gone, and the session's
    // failed chunk was dropped: its offset is still 0.
    assert_eq!(head_blob(&server, "full/blob", &big.digest).status, 404);
    let status = http::request(&server.addr, "GET", &upload, &[], &[]).unwrap();
    assert_eq!(status.header("range"), Some("0-0"), "{}", status.text());
    let sessions = disk
        .dir
        .path()
        .join("docker/registry/v2/repositories/full/blob/_uploads");
    assert_eq!(
        fs::read_dir(&sessions).unwrap().count(),
        1,
        "only the chunked session stays"
    );
    assert_stored(&verify_blob_store(disk.dir.path()), &images);
    // The space came back: a small blob fits, and the earlier images still pull.
    upload_ok(&server, "full/small", &BigBlob::new(7, MIB));
    assert_images_pull(&server, layout.path(), &images);
}
