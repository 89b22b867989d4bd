//! The HTTPS accept loop: TCP accept, TLS handshake in the connection's own task (bounded by a
//! timeout, so a slow or broken client never holds up the loop), then HTTP/1.1 or HTTP/2 (as
//! ALPN chose) through hyper-util's auto builder, every request carrying the client address as
//! axum's `ConnectInfo`. Called by [`crate::serve::run`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{self, GracefulShutdown};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::Tls;

/// The longest a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then stops accepting and
/// returns once every open connection has finished its in-flight requests (the caller bounds
/// that wait with the drain timeout).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<Tls>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, remote) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                accept_error(e).await;
                continue;
            }
        };
        let acceptor = TlsAcceptor::from(tls.server_config());
        tokio::spawn(connection(
            tcp,
            remote,
            acceptor,
            app.clone(),
            graceful.watcher(),
        ));
    }
    tracing::debug!(
        connections = graceful.count(),
        "TLS listener closed, waiting for open connections"
    );
    graceful.shutdown().await;
    Ok(())
}

/// One connection: handshake, then HTTP until the client leaves or shutdown drains it.
async fn connection(
    tcp: TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
    watcher: graceful::Watcher,
) {
    // Handshake flights are small and latency-bound; never hold them back.
    let _ = tcp.set_nodelay(true);
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(client = %remote, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(client = %remote, "TLS handshake timed out");
            return;
        }
    };
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(remote));
        host_from_authority(&mut req);
        app.clone().oneshot(req)
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(client = %remote, error = %e, "HTTPS connection ended with an error");
    }
}

/// HTTP/2 carries the host in `:authority` only, while the handlers build absolute URLs
/// from `Host` (which HTTP/1.1 requires): give them one, as Go's `Request.Host` does.
fn host_from_authority(req: &mut axum::http::Request<Body>) {
    if !req.headers().contains_key(header::HOST)
        && let Some(authority) = req.uri().authority()
        && let Ok(value) = HeaderValue::from_str(authority.as_str())
    {
        req.headers_mut().insert(header::HOST, value);
    }
}

/// Errors of one accept: a connection that died in the backlog is skipped; anything else
/// (such as running out of file descriptors) is logged and retried after a second, as
/// `axum::serve` does.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept error; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
