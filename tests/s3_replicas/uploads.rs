//! Upload sessions that move between the two replicas: a chunked upload whose chunks, final
//! PUT and status requests alternate between them; a wrong digest on the final PUT, which
//! stores nothing; and a replica SIGKILLed in the middle of a chunk, after which the client
//! asks the other replica where the session stands, finishes there, and the restarted
//! replica serves the blob.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use super::common::Target;
use super::common::http;
use super::common::minio::Minio;
use super::common::oci;
use super::common::upload::{
    assert_blob, assert_offset, blob, error_code, finish_upload, location_path, send_chunk,
    start_upload, upload_id,
};
use super::{MIB, PREFIX, assert_no_sessions_left, figure, keys_under, replicas};

// --- A chunked upload that moves between replicas -------------------------------------------

#[test]
fn chunked_upload_moves_between_replicas() {
    if !Minio::available("chunked_upload_moves_between_replicas") {
        return;
    }
    let started = Instant::now();
    let minio = Minio::start();
    let (a, b) = replicas(&minio, "chunks");
    let name = "team/chunked";
    let sizes = [6 * MIB, MIB, 2 * MIB + 12_345, 777];
    let data = oci::random_bytes(3, sizes.iter().sum());
    let digest = oci::digest_of(&data);

    let mut upload = start_upload(&a, name);
    let mut offset = 0;
    // Chunks 1..3 by PATCH on B, A, B; after each, the other replica reports the offset.
    for (i, (size, (on, other))) in sizes[..3]
        .iter()
        .zip([(&b, &a), (&a, &b), (&b, &a)])
        .enumerate()
    {
        let chunk = &data[offset..offset + size];
        let resp = send_chunk(on, &upload, offset, chunk);
        offset += size;
        assert_offset(
            &resp,
            202,
            offset,
            &format!("PATCH {} on {}", i + 1, on.addr),
        );
        upload = location_path(&resp);
        for method in ["GET", "HEAD"] {
            let status = http::request(&other.addr, method, &upload, &[], &[]).unwrap();
            let what = format!("{method} status on {} after chunk {}", other.addr, i + 1);
            assert_offset(&status, 204, offset, &what);
        }
    }
    assert_eq!(
        blob(&b, "HEAD", name, &digest).status,
        404,
        "visible before PUT"
    );

    let resp = finish_upload(&a, &upload, &digest, Some(offset), &data[offset..]);
    assert_eq!(resp.status, 201, "PUT ?digest= on A: {}", resp.text());
    assert_eq!(resp.header("docker-content-digest"), Some(digest.as_str()));
    assert_blob(&b, name, &digest, &data);
    let head = blob(&b, "HEAD", name, &digest);
    if head.status != 307 {
        assert_eq!(head.status, 200, "HEAD blob on B");
        assert_eq!(
            head.header("content-length"),
            Some(data.len().to_string().as_str())
        );
    }
    // The finished session is gone on both replicas.
    let status = http::request(&b.addr, "GET", &upload, &[], &[]).unwrap();
    assert_eq!(status.status, 404, "session after PUT: {}", status.text());
    assert_no_sessions_left(&minio, "chunks");
    figure("chunked_upload_moves_between_replicas", started);
}

#[test]
fn wrong_digest_across_replicas_stores_nothing() {
    if !Minio::available("wrong_digest_across_replicas_stores_nothing") {
        return;
    }
    let started = Instant::now();
    let minio = Minio::start();
    let (a, b) = replicas(&minio, "digests");
    let name = "team/wrong";
    let data = oci::random_bytes(4, 6 * MIB + 999);
    let actual = oci::digest_of(&data);
    let claimed = oci::digest_of(b"something else entirely");

    let upload = start_upload(&a, name);
    let resp = send_chunk(&b, &upload, 0, &data[..6 * MIB]);
    assert_offset(&resp, 202, 6 * MIB, "PATCH on B");
    let upload = location_path(&resp);
    let resp = finish_upload(&a, &upload, &claimed, Some(6 * MIB), &data[6 * MIB..]);
    assert_eq!(resp.status, 400, "PUT with a wrong digest: {}", resp.text());
    assert_eq!(error_code(&resp), "DIGEST_INVALID", "{}", resp.text());

    for (server, digest) in [(&b, &claimed), (&b, &actual), (&a, &claimed), (&a, &actual)] {
        let head = blob(server, "HEAD", name, digest);
        assert_eq!(
            head.status, 404,
            "{digest} on {} after a refused PUT",
            server.addr
        );
    }
    let blobs = keys_under(&minio, "digests", "blobs/");
    assert!(
        blobs.is_empty(),
        "blob data stored for a refused upload: {blobs:#?}"
    );
    // The refused session is gone, from the API and from the bucket. (distribution 2.8.2
    // leaves it half-removed: its status answers 500 and its keys stay.)
    if b.target == Target::Dockyard {
        let status = http::request(&b.addr, "GET", &upload, &[], &[]).unwrap();
        assert_eq!(status.status, 404, "the refused session: {}", status.text());
        assert_eq!(error_code(&status), "BLOB_UPLOAD_UNKNOWN");
        assert_no_sessions_left(&minio, "digests");
    }
    figure("wrong_digest_across_replicas_stores_nothing", started);
}

// --- A replica killed mid-chunk -------------------------------------------------------------

/// The part numbers MinIO holds for the multipart upload in progress at `key`, if any.
fn parts_of(minio: &Minio, bucket: &str, key: &str) -> Vec<u32> {
    let uploads = minio.multipart_uploads(bucket, key);
    match uploads.iter().find(|(k, _)| k == key) {
        Some((_, id)) => minio.uploaded_parts(bucket, key, id),
        None => Vec::new(),
    }
}

/// Waits until the multipart upload at `key` has more parts than `before`; returns them.
fn wait_for_more_parts(minio: &Minio, bucket: &str, key: &str, before: &[u32]) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let parts = parts_of(minio, bucket, key);
        if parts.len() > before.len() {
            return parts;
        }
        assert!(
            Instant::now() < deadline,
            "no part of {key} arrived after {before:?} (have {parts:?})"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn client_resumes_on_the_other_replica_after_a_kill() {
    if !Minio::available("client_resumes_on_the_other_replica_after_a_kill") {
        return;
    }
    let started = Instant::now();
    let minio = Minio::start();
    let (mut a, b) = replicas(&minio, "crash");
    let name = "team/crash";
    let first = 12 * MIB;
    let data = oci::random_bytes(6, 48 * MIB);
    let digest = oci::digest_of(&data);

    // 12 MiB on A: one 10 MiB part of a multipart upload and a 2 MiB tail.
    let upload = start_upload(&a, name);
    let resp = send_chunk(&a, &upload, 0, &data[..first]);
    assert_offset(&resp, 202, first, "first PATCH on A");
    let upload = location_path(&resp);
    let data_key = format!(
        "{PREFIX}repositories/{name}/_uploads/{}/data",
        upload_id(&upload)
    );
    let before = parts_of(&minio, "crash", &data_key);

    // The rest in one PATCH to A, killed once A has sent a part of it to that upload, which
    // the resumed session will send again under the same part number.
    let mut stream = http::connect(&a.addr).unwrap();
    let range = format!("{first}-{}", data.len() - 1);
    let headers = [
        ("Content-Type", "application/octet-stream"),
        ("Content-Range", range.as_str()),
    ];
    let rest = (data.len() - first) as u64;
    http::write_head(&mut stream, &a.addr, "PATCH", &upload, &headers, Some(rest)).unwrap();
    if let Err(e) = stream.write_all(&data[first..first + 24 * MIB]) {
        let answer = http::read_response(&mut stream, false).map(|r| (r.status, r.text()));
        panic!("A stopped reading the second PATCH ({e}); its answer: {answer:?}");
    }
    let parts = wait_for_more_parts(&minio, "crash", &data_key, &before);
    a.kill9();
    drop(stream);
    eprintln!(
        "killed A with parts {parts:?} of the session's multipart upload in MinIO, {before:?} before"
    );

    // B reports where the session stands: what A saved after the first PATCH.
    let status = http::request(&b.addr, "GET", &upload, &[], &[]).unwrap();
    if b.target == Target::Distribution {
        // Its session's recorded size no longer matches what the killed replica appended.
        eprintln!(
            "note: distribution 2.8.2 cannot continue a session after a replica died in a chunk: {} {}",
            status.status,
            status.text()
        );
        return;
    }
    assert_offset(&status, 204, first, "upload status on B after the kill");
    let resumed = status.header("range").unwrap();
    let offset: usize = resumed.split('-').nth(1).unwrap().parse::<usize>().unwrap() + 1;
    assert_eq!(
        blob(&b, "HEAD", name, &digest).status,
        404,
        "a partial blob is visible"
    );
    let blobs = keys_under(&minio, "crash", "blobs/");
    assert!(
        blobs.is_empty(),
        "blob data stored before the upload finished: {blobs:#?}"
    );

    // The client goes on from there on B.
    let upload = location_path(&status);
    let resp = send_chunk(&b, &upload, offset, &data[offset..]);
    assert_offset(&resp, 202, data.len(), "PATCH of the rest on B");
    let upload = location_path(&resp);
    let resp = finish_upload(&b, &upload, &digest, None, &[]);
    assert_eq!(resp.status, 201, "PUT ?digest= on B: {}", resp.text());
    assert_blob(&b, name, &digest, &data);
    assert_no_sessions_left(&minio, "crash");

    a.restart();
    assert_blob(&a, name, &digest, &data);
    figure("client_resumes_on_the_other_replica_after_a_kill", started);
}
