//! The accepted TCP stream, wrapped: every byte moved is recorded in the connection's
//! [`Activity`], the plain-text HTTP/2 preface is recognised, and closing *lingers*.
//!
//! When the server answers before reading a request body (401, 403, 413, 400) and closes,
//! the client's unread bytes would make the kernel send a reset, and a client that writes its
//! whole body before reading (Go's, so docker, containerd, crane) would see "broken pipe"
//! instead of the answer. So a dropped stream is handed to a task that half-closes it (FIN
//! after the response) and reads and discards what the client still sends, bounded by
//! [`LINGER_BYTES`] and [`LINGER_TIME`], before really closing it. The connection's slot under
//! the connection cap is held until then.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::activity::Activity;

/// The most a closing connection reads and discards.
pub const LINGER_BYTES: usize = 16 << 20;
/// The longest a closing connection waits for the client to finish sending and close.
pub const LINGER_TIME: Duration = Duration::from_secs(2);
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

pub struct TrackedTcp {
    tcp: Option<TcpStream>,
    activity: Arc<Activity>,
    permit: Option<OwnedSemaphorePermit>,
    /// Bytes of the HTTP/2 preface seen so far (plain text only).
    preface_checked: usize,
    sniff_preface: bool,
}

impl TrackedTcp {
    /// `sniff_preface`: the stream carries HTTP directly (not TLS), so its first bytes tell
    /// HTTP/2 with prior knowledge from HTTP/1.
    pub fn new(
        tcp: TcpStream,
        activity: Arc<Activity>,
        permit: Option<OwnedSemaphorePermit>,
        sniff_preface: bool,
    ) -> TrackedTcp {
        TrackedTcp {
            tcp: Some(tcp),
            activity,
            permit,
            preface_checked: 0,
            sniff_preface,
        }
    }

    fn tcp(&mut self) -> io::Result<&mut TcpStream> {
        self.tcp
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    fn sniff(&mut self, data: &[u8]) {
        if !self.sniff_preface {
            return;
        }
        let want = &H2_PREFACE[self.preface_checked..];
        let n = want.len().min(data.len());
        if data[..n] == want[..n] {
            self.preface_checked += n;
            if self.preface_checked == H2_PREFACE.len() {
                self.activity.set_http2();
                self.sniff_preface = false;
            }
        } else {
            self.sniff_preface = false;
        }
    }
}

impl AsyncRead for TrackedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(this.tcp()?).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let fresh = &buf.filled()[before..];
            this.sniff(fresh);
            this.activity.read(fresh.len());
        }
        polled
    }
}

impl AsyncWrite for TrackedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(this.tcp()?).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled {
            this.activity.wrote(n);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(this.tcp()?).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            this.activity.wrote(n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.as_ref().is_some_and(|t| t.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().tcp()?).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().tcp()?).poll_shutdown(cx)
    }
}

impl Drop for TrackedTcp {
    fn drop(&mut self) {
        let Some(tcp) = self.tcp.take() else {
            return;
        };
        let permit = self.permit.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(tcp, permit));
        }
    }
}

/// Half-closes, then reads and discards until the client closes or a bound is reached.
async fn linger(mut tcp: TcpStream, permit: Option<OwnedSemaphorePermit>) {
    let _ = tcp.shutdown().await;
    let drain = async {
        let mut buf = vec![0u8; 64 << 10];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    drop(tcp);
    drop(permit);
}
