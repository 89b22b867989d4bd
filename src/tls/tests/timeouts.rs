//! Slow and idle HTTPS connections: one that never starts its handshake, one that trickles its
//! request headers after it, and an idle HTTP/2 connection are all closed in time.

use std::time::Instant;

use super::*;
use crate::server::{Limits, Timeouts};

const LIMITS: Limits = Limits {
    max_connections: 100,
    timeouts: Timeouts {
        header: Duration::from_secs(1),
        idle: Duration::from_secs(2),
    },
};

async fn serve_with_limits(tls: Arc<Tls>) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/", get(|| async { "ok" }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(crate::server::serve(
        listener,
        Some(tls),
        app,
        LIMITS,
        async move {
            let _ = stopped.await;
        },
    ));
    TestServer { addr, _stop: stop }
}

/// Reads until the server closes the connection; how long that took, None past `limit`.
async fn until_closed(
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let drained = tokio::time::timeout(limit, async {
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    drained.await.ok().map(|()| started.elapsed())
}

#[tokio::test]
async fn slow_and_idle_https_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("timeouts CA");
    install(dir.path(), &ca.server(1));
    let tls = Tls::start(settings(dir.path(), vec![])).unwrap();
    let server = serve_with_limits(tls).await;

    // No handshake at all: closed after the header timeout.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let took = until_closed(&mut silent, Duration::from_secs(8)).await;
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(4)),
        "silent: {took:?}"
    );

    // A completed handshake, then request headers a byte every 200 ms.
    let stream = Client::trusting(&ca).connect(server.addr).await.unwrap();
    let (mut reader, mut writer) = tokio::io::split(stream);
    writer.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let trickle = tokio::spawn(async move {
        for _ in 0..50 {
            if writer.write_all(b"X").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let took = until_closed(&mut reader, Duration::from_secs(8)).await;
    trickle.abort();
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(4)),
        "slowloris: {took:?}"
    );

    // HTTP/2 by ALPN, one request, then idle: closed after the idle timeout.
    let mut client = Client::trusting(&ca);
    client.alpn = vec![b"h2".to_vec()];
    let mut h2 = client.connect(server.addr).await.unwrap();
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let took = until_closed(&mut h2, Duration::from_secs(10)).await;
    assert!(
        took.is_some_and(|t| t >= Duration::from_millis(1500) && t < Duration::from_secs(6)),
        "idle HTTP/2: {took:?}"
    );

    // A client that behaves is served.
    assert_eq!(Client::trusting(&ca).get(server.addr).await.unwrap(), "ok");
}
