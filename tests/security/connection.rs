//! Refusals of requests that carry a body, on a kept-alive HTTP/1.1 connection, the way Go
//! clients (the OCI conformance suite, containerd, crane) send them: first without
//! credentials, then again after the challenge. A registry that answers before reading the
//! body must either drain it and keep serving the connection, or say `Connection: close`;
//! closing silently makes the client's next request on that connection fail with EOF, and Go
//! does not retry a PUT, POST or PATCH. A client that writes its whole body before reading
//! (Go's transport) must still get the refusal: the server drains, it does not reset.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use super::common::Server;
use super::common::http;
use super::fixture::{
    Htpasswd, auth_server, basic, dockyard_only, dockyard_with_auth_yaml, push_image,
};

/// One response read off a kept-alive connection: status, lower-cased headers.
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn closes(&self) -> bool {
        self.headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"))
    }
}

/// Reads one response (head and `Content-Length` body); None when the connection ended first.
fn read_one(stream: &mut TcpStream) -> Option<Head> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => raw.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body).ok()?;
    Some(Head { status, headers })
}

/// How a client writes a request body.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// Head and body in one write.
    Together,
    /// The head, then the body 200 ms later (a slow client, or Go flushing the head first).
    BodyLater,
}

/// Sends `method path` with a body of `size` bytes written at `pace` as `first_auth` on a kept-alive connection,
/// expects `refused`, then sends `GET /v2/` with `then_auth` on the same connection.
fn refuse_then_reuse(
    server: &Server,
    method: &str,
    path: &str,
    (size, pace): (usize, Pace),
    first_auth: Option<&str>,
    refused: u16,
    then_auth: &str,
) {
    let mut stream = http::connect(&server.addr).unwrap();
    let auth = first_auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/octet-stream\r\n\
         Content-Length: {size}\r\n\r\n",
        server.addr
    );
    let what = format!("{method} {path} with {size} body bytes ({pace:?})");
    // A server that answers early may reset the connection before the body is all sent.
    let _ = stream.write_all(head.as_bytes());
    if let Pace::BodyLater = pace {
        thread::sleep(Duration::from_millis(200));
    }
    let _ = stream.write_all(&vec![b'x'; size]);
    let first = read_one(&mut stream)
        .unwrap_or_else(|| panic!("{what}: the connection ended without an answer"));
    assert_eq!(first.status, refused, "{what}: {:?}", first.headers);
    if first.closes() {
        return;
    }
    let next = format!(
        "GET /v2/ HTTP/1.1\r\nHost: {}\r\nAuthorization: {then_auth}\r\n\r\n",
        server.addr
    );
    let sent = stream.write_all(next.as_bytes());
    let second = sent.ok().and_then(|()| read_one(&mut stream));
    assert!(
        second.as_ref().is_some_and(|h| h.status == 200),
        "{what}: answered {refused} without `Connection: close`, then dropped the kept-alive \
         connection (the next request got {:?})",
        second.map(|h| h.status)
    );
}

/// The body sizes and pacing every refusal is tried with.
const BODIES: [(usize, Pace); 3] = [
    (100, Pace::Together),
    (100, Pace::BodyLater),
    (100_000, Pace::Together),
];

#[test]
fn a_challenged_upload_leaves_the_connection_usable_or_closes_it_openly() {
    let users = Htpasswd::new(&[("admin", "admin-pass")]);
    let server = auth_server(&users.path, &[]);
    let admin = basic("admin", "admin-pass");
    let upload = "/v2/team/app/blobs/uploads/?digest=sha256:00";
    for body in BODIES {
        refuse_then_reuse(&server, "POST", upload, body, None, 401, &admin);
        let manifest = "/v2/team/app/manifests/v1";
        refuse_then_reuse(&server, "PUT", manifest, body, None, 401, &admin);
    }
}

#[test]
fn a_denied_push_leaves_the_connection_usable_or_closes_it_openly() {
    if dockyard_only(super::common::Target::from_env(), "access rules") {
        return;
    }
    let users = Htpasswd::new(&[("admin", "admin-pass"), ("viewer", "viewer-pass")]);
    let rules = "  access:
    - users: [admin]
      repositories: [\"**\"]
      actions: [pull, push]
    - users: [viewer]
      repositories: [\"**\"]
      actions: [pull]
";
    let server = dockyard_with_auth_yaml(&users, rules);
    let tmp = tempfile::TempDir::new().unwrap();
    push_image(
        &server,
        Some(&basic("admin", "admin-pass")),
        tmp.path(),
        "c",
        "team/app",
        "v1",
    );
    let viewer = basic("viewer", "viewer-pass");
    let manifest = "/v2/team/app/manifests/v2";
    for body in BODIES {
        refuse_then_reuse(&server, "PUT", manifest, body, Some(&viewer), 403, &viewer);
    }
}

/// Writes a whole request (head and `size` body bytes, no credentials) before reading
/// anything, as Go's transport does, then reads the answer.
fn write_all_then_read(server: &Server, size: usize) -> Result<u16, String> {
    let mut stream = http::connect(&server.addr).map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    let head = format!(
        "POST /v2/team/app/blobs/uploads/?digest=sha256:{} HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n",
        "0".repeat(64),
        server.addr
    );
    let mut request = head.into_bytes();
    request.extend(std::iter::repeat_n(b'x', size));
    stream
        .write_all(&request)
        .map_err(|e| format!("writing the body: {e}"))?;
    read_one(&mut stream)
        .map(|h| h.status)
        .ok_or_else(|| "reading the answer: the connection was reset".to_string())
}

#[test]
fn an_early_refusal_reaches_a_client_that_writes_its_whole_body_first() {
    let users = Htpasswd::new(&[("admin", "admin-pass")]);
    let server = auth_server(&users.path, &[]);
    if dockyard_only(server.target, "draining after an early refusal") {
        return;
    }
    for (size, tries) in [(64 << 10, 30), (1 << 20, 10), (4 << 20, 10)] {
        let lost: Vec<String> = (0..tries)
            .filter_map(|_| match write_all_then_read(&server, size) {
                Ok(401) => None,
                Ok(other) => Some(format!("status {other}")),
                Err(e) => Some(e),
            })
            .collect();
        assert!(
            lost.is_empty(),
            "{size}-byte bodies: the 401 was lost in {} of {tries} tries: {:?}",
            lost.len(),
            lost.first()
        );
    }
}
