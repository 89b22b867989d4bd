//! The accept loop for HTTP and HTTPS: a cap on open connections, the TLS handshake (bounded
//! by a timeout) in each connection's own task, HTTP/1.1 or HTTP/2 through hyper-util's auto
//! builder, a watchdog per connection that closes it when headers come too slowly or it sits
//! idle ([`activity`]), a lingering close so early refusals reach the client ([`stream`]), and
//! graceful shutdown. Every request carries the client address as axum's `ConnectInfo`.
//! Called by [`crate::serve::run`] only.

pub mod activity;
mod stream;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, header};
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

pub use activity::{Activity, Timeouts};
use stream::TrackedTcp;

use crate::tls::Tls;

/// The longest a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection cut by its watchdog may take to finish closing.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most; further clients wait in the listen backlog.
    pub max_connections: usize,
    pub timeouts: Timeouts,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            timeouts: Timeouts::default(),
        }
    }
}

/// Serves `app` on `listener` (over TLS when given) until `shutdown` resolves, then stops
/// accepting and returns once every open connection has finished its in-flight requests
/// (the caller bounds that wait with the drain timeout).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let cap = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(cap));
    let stopping = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "connection limit reached; new clients wait until a connection closes"
                );
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
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
        let conn = Connection {
            remote,
            tls: tls.clone(),
            app: app.clone(),
            timeouts: limits.timeouts,
            stopping: stopping.clone(),
        };
        tracker.spawn(conn.run(tcp, permit));
    }
    tracing::debug!(
        connections = tracker.len(),
        "listener closed, waiting for open connections"
    );
    stopping.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// One accepted connection.
struct Connection {
    remote: SocketAddr,
    tls: Option<Arc<Tls>>,
    app: Router,
    timeouts: Timeouts,
    stopping: CancellationToken,
}

impl Connection {
    async fn run(self, tcp: TcpStream, permit: tokio::sync::OwnedSemaphorePermit) {
        let _ = tcp.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let stream = TrackedTcp::new(tcp, activity.clone(), Some(permit), self.tls.is_none());
        match &self.tls {
            None => self.http(TokioIo::new(stream), activity).await,
            Some(tls) => {
                let acceptor = TlsAcceptor::from(tls.server_config());
                let limit = HANDSHAKE_TIMEOUT.min(self.timeouts.header);
                let handshake = tokio::time::timeout(limit, acceptor.accept(stream));
                let stream = match handshake.await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(client = %self.remote, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(client = %self.remote, "TLS handshake timed out");
                        return;
                    }
                };
                if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                    activity.set_http2();
                }
                self.http(TokioIo::new(stream), activity).await
            }
        }
    }

    /// HTTP until the client leaves, the watchdog cuts the connection, or shutdown drains it.
    async fn http<I>(self, io: TokioIo<I>, activity: Arc<Activity>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (remote, app) = (self.remote, self.app);
        let tracked = activity.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(remote));
            host_from_authority(&mut req);
            let activity = tracked.clone();
            activity.request_started();
            let guard = InFlight(activity);
            let app = app.clone();
            async move {
                let resp = app.oneshot(req).await?;
                Ok::<_, std::convert::Infallible>(resp.map(|body| {
                    Body::new(TrackedBody {
                        body,
                        _guard: guard,
                    })
                }))
            }
        });
        let builder = auto::Builder::new(TokioExecutor::new());
        let conn = builder.serve_connection_with_upgrades(io, service);
        let mut conn = std::pin::pin!(conn);
        let reason = tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(client = %remote, error = %e, "connection ended with an error");
                }
                return;
            }
            () = watchdog(&activity, &self.timeouts) => "idle or too slow",
            () = self.stopping.cancelled() => "server shutting down",
        };
        tracing::debug!(client = %remote, reason, "closing connection");
        conn.as_mut().graceful_shutdown();
        if self.stopping.is_cancelled() {
            // In-flight requests finish; the caller bounds this with the drain timeout.
            let _ = conn.await;
        } else {
            let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
        }
    }
}

/// Resolves when the connection has been idle or slow past its deadline.
async fn watchdog(activity: &Activity, timeouts: &Timeouts) {
    loop {
        let deadline = activity.deadline(timeouts);
        let now = tokio::time::Instant::now().into_std();
        if now >= deadline {
            return;
        }
        // A deadline can move earlier (headers start trickling into an idle connection):
        // look again at least once per header timeout.
        tokio::time::sleep_until(deadline.min(now + timeouts.header).into()).await;
    }
}

/// Marks a request in flight until its response body is dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// A response body that ends its request's in-flight mark when it is done with.
struct TrackedBody {
    body: Body,
    _guard: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
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
