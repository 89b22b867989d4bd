//! The blob upload protocol spoken by hand, for tests that control every request (which
//! replica gets each chunk, where a connection is cut): start a session, send chunks with
//! `Content-Range`, finish with `?digest=`, read the offset a session reports, and fetch a
//! blob, following a redirect to object storage as clients do.

use super::http::{self, Response};
use super::oci;
use super::registry::json;
use super::server::Server;

/// The path and query of a response's `Location` (absolute or relative).
pub fn location_path(resp: &Response) -> String {
    let location = resp
        .header("location")
        .unwrap_or_else(|| panic!("no Location in a {} answer", resp.status));
    match location.find("/v2/") {
        Some(start) => location[start..].to_string(),
        None => panic!("odd Location {location:?}"),
    }
}

/// The session id in an upload URL (`/v2/<name>/blobs/uploads/<id>[?...]`).
pub fn upload_id(upload: &str) -> &str {
    let path = upload.split('?').next().unwrap_or_default();
    path.rsplit('/').next().unwrap_or_default()
}

/// `POST /v2/<name>/blobs/uploads/` on `server`; asserts 202 and returns the upload URL.
pub fn start_upload(server: &Server, name: &str) -> String {
    let path = format!("/v2/{name}/blobs/uploads/");
    let resp = http::request(&server.addr, "POST", &path, &[], &[]).unwrap();
    assert_eq!(
        resp.status,
        202,
        "POST {path} on {}: {}",
        server.addr,
        resp.text()
    );
    location_path(&resp)
}

/// `PATCH` of `bytes` at `offset` with `Content-Range`, on `server`.
pub fn send_chunk(server: &Server, upload: &str, offset: usize, bytes: &[u8]) -> Response {
    let range = format!("{offset}-{}", offset + bytes.len() - 1);
    let headers = [
        ("Content-Type", "application/octet-stream"),
        ("Content-Range", range.as_str()),
    ];
    http::request(&server.addr, "PATCH", upload, &headers, bytes).unwrap()
}

/// `PUT <upload>?digest=` with `body`, as a final chunk at `offset` (with `Content-Range`)
/// or, without an offset, as the whole blob.
pub fn finish_upload(
    server: &Server,
    upload: &str,
    digest: &str,
    offset: Option<usize>,
    body: &[u8],
) -> Response {
    let sep = if upload.contains('?') { '&' } else { '?' };
    let path = format!("{upload}{sep}digest={digest}");
    let range = offset.map(|o| format!("{o}-{}", o + body.len() - 1));
    let mut headers = vec![("Content-Type", "application/octet-stream")];
    if let Some(range) = &range {
        headers.push(("Content-Range", range.as_str()));
    }
    http::request(&server.addr, "PUT", &path, &headers, body).unwrap()
}

/// Asserts `resp` is `status` and says the session holds `offset` bytes (`Range: 0-<last>`).
pub fn assert_offset(resp: &Response, status: u16, offset: usize, what: &str) {
    assert_eq!(resp.status, status, "{what}: {}", resp.text());
    let want = format!("0-{}", offset - 1);
    assert_eq!(
        resp.header("range"),
        Some(want.as_str()),
        "{what}: the session should be at {offset} bytes"
    );
}

/// Stores `bytes` as a blob of `name` on `server` (POST, then PUT with the whole body).
pub fn push_blob(server: &Server, name: &str, bytes: &[u8]) -> String {
    let digest = oci::digest_of(bytes);
    let upload = start_upload(server, name);
    let resp = finish_upload(server, &upload, &digest, None, bytes);
    assert_eq!(resp.status, 201, "PUT blob {digest}: {}", resp.text());
    digest
}

/// `GET` or `HEAD /v2/<name>/blobs/<digest>` on `server`, whatever the answer.
pub fn blob(server: &Server, method: &str, name: &str, digest: &str) -> Response {
    let path = format!("/v2/{name}/blobs/{digest}");
    http::request(&server.addr, method, &path, &[], &[]).unwrap()
}

/// Asserts `server` serves blob `digest` of `name` with exactly `bytes`, directly (with its
/// digest in `Docker-Content-Digest`) or through a redirect to the bucket, which registries
/// on object storage send by default.
pub fn assert_blob(server: &Server, name: &str, digest: &str, bytes: &[u8]) {
    let mut resp = blob(server, "GET", name, digest);
    if resp.status == 307 {
        let url = resp.header("location").unwrap_or_default().to_string();
        let rest = url
            .strip_prefix("http://")
            .expect("a redirect to plain HTTP");
        let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        resp = http::request(addr, "GET", path, &[], &[]).unwrap();
    } else {
        assert_eq!(resp.header("docker-content-digest"), Some(digest));
    }
    assert_eq!(
        resp.status,
        200,
        "GET blob on {}: {}",
        server.addr,
        resp.text()
    );
    assert_eq!(
        resp.body.len(),
        bytes.len(),
        "blob length on {}",
        server.addr
    );
    assert!(resp.body == bytes, "blob bytes differ on {}", server.addr);
}

/// The `code` of the first error in an OCI error body.
pub fn error_code(resp: &Response) -> String {
    let body = json(&resp.body);
    body["errors"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
        .to_string()
}
