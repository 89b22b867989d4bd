//! A round-robin load balancer for tests that put several registry replicas behind one
//! address: each HTTP/1.1 request goes to the next backend in turn, and the balancer
//! records which backend got which request.
//!
//! Alternation is per request, not per connection. HTTP clients keep connections alive, so a
//! per-connection round robin would send a whole client session to one replica. The
//! balancer therefore rewrites each request's `Connection` header to `close`: the backend
//! answers with `Connection: close` and closes, and the client's next request comes on a new
//! connection, which goes to the next backend. Apart from that header, bytes pass through
//! untouched (`Host` included, so the `Location` a replica returns points at the balancer).
//! It runs on plain threads on loopback and is stopped on drop.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The largest request head the balancer reads before giving up on a connection.
const MAX_HEAD: usize = 64 << 10;

/// One request the balancer forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// Index of the backend in the list given to [`RoundRobin::start`].
    pub backend: usize,
    pub method: String,
    /// The request target as sent (`/v2/...?...`).
    pub target: String,
}

struct Shared {
    backends: Vec<String>,
    next: AtomicUsize,
    stopping: AtomicBool,
    forwarded: Mutex<Vec<Forwarded>>,
}

/// A running balancer; stopped on drop.
pub struct RoundRobin {
    addr: String,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl RoundRobin {
    /// Listens on a free loopback port and sends requests to `backends` (`127.0.0.1:PORT`
    /// each) in turn, starting with the first.
    pub fn start(backends: &[&str]) -> RoundRobin {
        assert!(!backends.is_empty(), "a balancer needs backends");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the balancer");
        let addr = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared {
            backends: backends.iter().map(|b| b.to_string()).collect(),
            next: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            forwarded: Mutex::new(Vec::new()),
        });
        let accepting = shared.clone();
        let acceptor = thread::spawn(move || accept_loop(listener, accepting));
        RoundRobin {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:PORT` of the balancer.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Every request forwarded so far, in the order they arrived.
    pub fn forwarded(&self) -> Vec<Forwarded> {
        self.shared
            .forwarded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many requests each backend got, in the order of [`RoundRobin::start`]'s list.
    pub fn counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.shared.backends.len()];
        for request in self.forwarded() {
            counts[request.backend] += 1;
        }
        counts
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor, which then sees `stopping`.
        let _ = TcpStream::connect(&self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let shared = shared.clone();
        thread::spawn(move || {
            if let Err(e) = relay(client, &shared) {
                eprintln!("balancer: connection dropped: {e}");
            }
        });
    }
}

/// Forwards the one request that arrives on `client` to the next backend and the backend's
/// answer back, then closes both connections.
fn relay(mut client: TcpStream, shared: &Shared) -> io::Result<()> {
    client.set_nodelay(true)?;
    let Some((head, early_body)) = read_head(&mut client)? else {
        // An idle keep-alive connection the client closed: nothing to forward.
        return Ok(());
    };
    let (method, target) = request_line(&head)?;
    let backend = shared.next.fetch_add(1, Ordering::SeqCst) % shared.backends.len();
    shared
        .forwarded
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Forwarded {
            backend,
            method,
            target,
        });
    let mut upstream = TcpStream::connect(&shared.backends[backend])?;
    upstream.set_nodelay(true)?;
    upstream.write_all(&close_after(&head))?;
    upstream.write_all(&early_body)?;
    // The rest of the body, in its own thread: the backend may answer before reading it all.
    let (mut body_from, mut body_to) = (client.try_clone()?, upstream.try_clone()?);
    let body = thread::spawn(move || {
        let _ = io::copy(&mut body_from, &mut body_to);
    });
    let answered = io::copy(&mut upstream, &mut client);
    // Unblocks the body thread (a read on a shut-down socket returns at once).
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
    let _ = body.join();
    answered.map(|_| ())
}

/// Reads up to the end of the request head; returns the head (with its final blank line) and
/// whatever body bytes came with it, or None when the client closed before sending a request.
fn read_head(client: &mut TcpStream) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    client.set_read_timeout(Some(Duration::from_secs(600)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return match buf.is_empty() {
                true => Ok(None),
                false => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a request head",
                )),
            };
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let body = buf.split_off(end + 4);
            client.set_read_timeout(None)?;
            return Ok(Some((buf, body)));
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
    }
}

fn request_line(head: &[u8]) -> io::Result<(String, String)> {
    let text = String::from_utf8_lossy(head);
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    match (parts.next(), parts.next()) {
        (Some(method), Some(target)) if !method.is_empty() => {
            Ok((method.to_string(), target.to_string()))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad request line {line:?}"),
        )),
    }
}

/// The request head with its connection-management headers replaced by `Connection: close`.
fn close_after(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::with_capacity(text.len() + 20);
    for line in text.trim_end_matches("\r\n").split("\r\n") {
        let name = line.split(':').next().unwrap_or_default().trim();
        let hop_by_hop = ["connection", "keep-alive", "proxy-connection"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h));
        if !hop_by_hop {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_connection_headers_only() {
        let head =
            b"PATCH /v2/a/blobs/uploads/x HTTP/1.1\r\nHost: h:1\r\nconnection: keep-alive\r\n\
                     Keep-Alive: timeout=5\r\nContent-Length: 3\r\nX-Connection-Id: 7\r\n\r\n";
        let out = String::from_utf8(close_after(head)).unwrap();
        assert_eq!(
            out,
            "PATCH /v2/a/blobs/uploads/x HTTP/1.1\r\nHost: h:1\r\nContent-Length: 3\r\n\
             X-Connection-Id: 7\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            request_line(head).unwrap(),
            ("PATCH".into(), "/v2/a/blobs/uploads/x".into())
        );
    }

    /// Two one-shot backends that answer with their own name; a client on one keep-alive
    /// connection still gets both, in turn.
    #[test]
    fn alternates_requests_of_one_keep_alive_client() {
        let backends: Vec<(TcpListener, String)> = (0..2)
            .map(|_| {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                let a = l.local_addr().unwrap().to_string();
                (l, a)
            })
            .collect();
        let addrs: Vec<&str> = backends.iter().map(|(_, a)| a.as_str()).collect();
        let balancer = RoundRobin::start(&addrs);
        let mut servers = Vec::new();
        for (i, (listener, _)) in backends.into_iter().enumerate() {
            servers.push(thread::spawn(move || {
                for _ in 0..2 {
                    let (mut conn, _) = listener.accept().unwrap();
                    let (head, _) = read_head(&mut conn).unwrap().unwrap();
                    let head = String::from_utf8(head).unwrap();
                    assert!(head.ends_with("Connection: close\r\n\r\n"), "{head}");
                    let body = format!("backend{i}");
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    conn.write_all(answer.as_bytes()).unwrap();
                }
            }));
        }
        let mut answers = Vec::new();
        for _ in 0..4 {
            let resp = crate::http::request(
                balancer.addr(),
                "GET",
                "/v2/",
                &[("Connection", "keep-alive")],
                b"",
            )
            .unwrap();
            answers.push(resp.text());
        }
        assert_eq!(answers, ["backend0", "backend1", "backend0", "backend1"]);
        assert_eq!(balancer.counts(), [2, 2]);
        for server in servers {
            server.join().unwrap();
        }
    }
}
