//! Connections that do nothing useful, as a hostile or broken client holds them: headers
//! trickled a byte at a time (slowloris), connections that never send a byte, kept-alive
//! connections left idle, and more connections than the configured cap. Each is closed or held
//! back in time, while a slow download and a slow upload that keep moving data complete.
//! Timeouts are shortened through `REGISTRY_HTTP_TIMEOUTS_*` so the test runs in seconds.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::common::{Server, Target, http};
use super::fixture::dockyard_only;

const HEADER_TIMEOUT: &str = "2s";
const IDLE_TIMEOUT: &str = "3s";

fn server_with(extra: &[(&str, &str)]) -> Server {
    let mut builder = Server::builder()
        .delete_enabled(true)
        .env("REGISTRY_HTTP_TIMEOUTS_READHEADER", HEADER_TIMEOUT)
        .env("REGISTRY_HTTP_TIMEOUTS_IDLE", IDLE_TIMEOUT);
    for (k, v) in extra {
        builder = builder.env(k, v);
    }
    builder.start()
}

/// Waits until the server closes `stream` (a read gives EOF or an error); how long it took.
fn closed_after(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn slow_headers_silent_and_idle_connections_are_closed() {
    if dockyard_only(Target::from_env(), "connection timeouts") {
        return;
    }
    let server = server_with(&[]);
    let started = Instant::now();
    // Slowloris: a request line, then one header byte every 300 ms, forever.
    let trickling: Vec<_> = (0..20)
        .map(|_| {
            let addr = server.addr.clone();
            thread::spawn(move || {
                let mut s = http::connect(&addr).unwrap();
                s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").unwrap();
                let begun = Instant::now();
                while begun.elapsed() < Duration::from_secs(20) {
                    if s.write_all(b"X").is_err() {
                        return Some(begun.elapsed());
                    }
                    thread::sleep(Duration::from_millis(300));
                }
                None
            })
        })
        .collect();
    // Connections that never send a byte.
    let mut silent: Vec<TcpStream> = (0..20)
        .map(|_| http::connect(&server.addr).unwrap())
        .collect();
    // A kept-alive connection that made one request and then sat idle.
    let mut idle = http::connect(&server.addr).unwrap();
    idle.write_all(format!("GET /v2/ HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr).as_bytes())
        .unwrap();

    for (i, s) in silent.iter_mut().enumerate() {
        let took = closed_after(s, Duration::from_secs(10)).map(|_| started.elapsed());
        assert!(
            took.is_some_and(|t| t < Duration::from_secs(6)),
            "silent connection {i} still open after {took:?}"
        );
    }
    let idle_closed = closed_after(&mut idle, Duration::from_secs(15)).map(|_| started.elapsed());
    assert!(
        idle_closed.is_some_and(|t| t >= Duration::from_millis(2500) && t < Duration::from_secs(9)),
        "idle keep-alive connection closed at {idle_closed:?} (idle timeout {IDLE_TIMEOUT})"
    );
    for (i, t) in trickling.into_iter().enumerate() {
        // A write fails only once the close has come back as a reset; allow for that.
        let took = t.join().unwrap();
        assert!(
            took.is_some_and(|t| t < Duration::from_secs(8)),
            "slowloris connection {i}: still open after {took:?} (header timeout {HEADER_TIMEOUT})"
        );
    }
    // The server still serves.
    assert_eq!(http::http_get(&server.addr, "/v2/").0, 200);
}

#[test]
fn slow_transfers_that_keep_moving_are_never_cut() {
    if dockyard_only(Target::from_env(), "connection timeouts") {
        return;
    }
    let server = server_with(&[]);
    // An upload of 16 MiB sent 256 KiB at a time over about 6 s (twice the idle timeout).
    let blob: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&blob)));
    let mut up = http::connect(&server.addr).unwrap();
    let path = format!("/v2/slow/blobs/uploads/?digest={digest}");
    http::write_head(
        &mut up,
        &server.addr,
        "POST",
        &path,
        &[],
        Some(blob.len() as u64),
    )
    .unwrap();
    for chunk in blob.chunks(256 << 10) {
        up.write_all(chunk).unwrap();
        thread::sleep(Duration::from_millis(95));
    }
    let resp = http::read_response(&mut up, false).unwrap();
    assert_eq!(resp.status, 201, "slow upload: {}", resp.text());

    // A download read 1 MiB per 400 ms: about 6.4 s in all, never idle for long.
    let mut down = http::connect(&server.addr).unwrap();
    let path = format!("/v2/slow/blobs/{digest}");
    http::write_head(&mut down, &server.addr, "GET", &path, &[], None).unwrap();
    let mut received = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match down.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                received.extend_from_slice(&buf[..n]);
                thread::sleep(Duration::from_micros(n as u64 * 400_000 / (1 << 20)));
            }
            Err(e) => panic!("download cut after {} bytes: {e}", received.len()),
        }
    }
    let split = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        received.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &received[..split]
    );
    let body = &received[split..];
    assert_eq!(body.len(), blob.len(), "the slow download was cut short");
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(body))),
        digest
    );
}

#[test]
fn past_the_connection_cap_new_clients_wait_for_a_free_slot() {
    if dockyard_only(Target::from_env(), "a connection cap") {
        return;
    }
    let server = server_with(&[("REGISTRY_HTTP_MAXCONNECTIONS", "4")]);
    let holders: Vec<TcpStream> = (0..4)
        .map(|_| http::connect(&server.addr).unwrap())
        .collect();
    thread::sleep(Duration::from_millis(300));
    // The fifth client is accepted only when the header timeout frees a slot.
    let started = Instant::now();
    let (status, _, _) = http::http_get(&server.addr, "/v2/");
    let waited = started.elapsed();
    assert_eq!(status, 200);
    assert!(
        waited >= Duration::from_secs(1),
        "answered after {waited:?}: the cap of 4 connections did not hold"
    );
    drop(holders);
    assert!(
        server.log().contains("connection limit reached"),
        "the cap is logged"
    );
}
