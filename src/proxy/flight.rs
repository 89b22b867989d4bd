//! Cold blobs, fetched once however many clients ask (single-flight per digest). The fetch
//! runs in a task of its own, so a client that disconnects does not abort it for the others:
//! it streams the upstream's body into an upload session of the local store, hashing as it
//! goes. The latest chunks stay in memory (the tail) while they are written: clients that keep
//! up get them from there as they arrive, without waiting for the disk. A client that falls
//! behind the tail reads the session's data, which is on disk by then; after the commit (only
//! when the digest matches) the rest comes from the stored blob. Nothing is buffered whole:
//! memory holds the tail, whose size is bounded, and one read window per lagging client.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use tokio::sync::watch;

use super::tail::Tail;
use super::upstream::Upstream;
use crate::content::{BlobRange, Content};
use crate::oci::{Digest, RepoName};
use crate::storage::ByteStream;

/// Bytes gathered before they are made readable from the session's data (until then, the
/// tail holds them): twice the filesystem writer's batch, so that one batch is written while
/// the next is gathered.
const FLUSH_EVERY: usize = 2 << 20;
/// The longest an upstream may pause in the middle of a blob before the fetch fails.
const BODY_IDLE: std::time::Duration = std::time::Duration::from_secs(60);
/// The most a follower reads from the session in one go: with many followers of a slow
/// client, what each holds in memory stays small.
const FOLLOW_WINDOW: u64 = 4 << 20;

/// How far a fetch has come.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// The blob's size, once the upstream has answered.
    size: Option<u64>,
    /// Bytes received from the upstream: those past `written` are in the tail.
    received: u64,
    /// Bytes readable in the upload session.
    written: u64,
    /// `Some(Ok)` once committed, `Some(Err)` when it failed.
    done: Option<Result<(), String>>,
}

/// One fetch in progress.
pub struct Flight {
    name: RepoName,
    upload: String,
    progress: watch::Receiver<Progress>,
    tail: Mutex<Tail>,
}

/// The fetches in progress of one mirror, by digest.
#[derive(Default)]
pub struct Flights {
    running: Mutex<HashMap<Digest, Arc<Flight>>>,
}

impl Flights {
    /// Joins the fetch of `digest`, starting it (for `name`, from `remote` upstream) if none
    /// runs. The flag is true when this call joined a fetch that was already running.
    pub async fn join(
        self: &Arc<Self>,
        content: &Content,
        upstream: &Arc<Upstream>,
        name: &RepoName,
        remote: &str,
        digest: &Digest,
    ) -> crate::content::Result<(Arc<Flight>, bool)> {
        if let Some(f) = self.lock().get(digest) {
            return Ok((f.clone(), true));
        }
        let (upload, writer) = content.open_upload(name).await?;
        let (tx, rx) = watch::channel(Progress::default());
        let flight = Arc::new(Flight {
            name: name.clone(),
            upload: upload.clone(),
            progress: rx,
            tail: Mutex::default(),
        });
        {
            let mut running = self.lock();
            if let Some(f) = running.get(digest) {
                // Another request started it meanwhile: use that one.
                let f = f.clone();
                drop(running);
                let content = content.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    let _ = writer.cancel().await;
                    let _ = content.discard_upload(&name, &upload).await;
                });
                return Ok((f, true));
            }
            running.insert(digest.clone(), flight.clone());
        }
        let fetch = Fetch {
            flight: flight.clone(),
            content: content.clone(),
            upstream: upstream.clone(),
            name: name.clone(),
            remote: remote.to_owned(),
            digest: digest.clone(),
            upload,
        };
        let landing = Landing {
            flights: self.clone(),
            digest: digest.clone(),
        };
        tokio::spawn(async move {
            // The flight leaves the map however the task ends, a panic included.
            let _landing = landing;
            fetch.run(writer, tx).await;
        });
        Ok((flight, false))
    }

    /// Digests being fetched now.
    pub fn running(&self) -> std::collections::HashSet<Digest> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Arc<Flight>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes a flight from the map when its task ends.
struct Landing {
    flights: Arc<Flights>,
    digest: Digest,
}

impl Drop for Landing {
    fn drop(&mut self) {
        self.flights.lock().remove(&self.digest);
    }
}

impl Flight {
    /// The blob's size, once the upstream answered; the fetch's error if it failed first.
    pub async fn size(&self) -> Result<u64, String> {
        let mut rx = self.progress.clone();
        loop {
            {
                let p = rx.borrow_and_update();
                if let Some(size) = p.size {
                    return Ok(size);
                }
                if let Some(Err(e)) = &p.done {
                    return Err(e.clone());
                }
            }
            if rx.changed().await.is_err() {
                return Err("the fetch stopped".into());
            }
        }
    }

    /// The bytes of `range` (all of them if none), as they arrive.
    pub fn stream(
        self: Arc<Self>,
        content: Content,
        digest: Digest,
        range: BlobRange,
    ) -> ByteStream {
        let state = Reader {
            flight: self,
            content,
            digest,
            pos: range.start,
            end: range.end + 1,
            current: None,
        };
        futures::stream::unfold(state, |mut r| async move {
            let item = r.next().await?;
            Some((item, r))
        })
        .boxed()
    }
}

/// A client's position in a fetch.
struct Reader {
    flight: Arc<Flight>,
    content: Content,
    digest: Digest,
    pos: u64,
    end: u64,
    /// The stream being read, and where it must end: one that ends sooner (data truncated
    /// under it by a failed fetch) is an error, never a reason to open it again.
    current: Option<(ByteStream, u64)>,
}

impl Reader {
    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            if self.pos >= self.end {
                return None;
            }
            if let Some((stream, until)) = &mut self.current {
                match stream.next().await {
                    Some(Ok(chunk)) => {
                        self.pos += chunk.len() as u64;
                        return Some(Ok(chunk));
                    }
                    Some(Err(e)) => return Some(Err(e)),
                    None if self.pos < *until => {
                        return Some(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the fetched data ended early (the fetch failed)",
                        )));
                    }
                    None => self.current = None,
                }
                continue;
            }
            match self.open().await {
                Ok(Next::Chunk(chunk)) => {
                    self.pos += chunk.len() as u64;
                    return Some(Ok(chunk));
                }
                Ok(Next::Stream(stream, until)) => self.current = Some((stream, until)),
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// What is readable from `pos` now, waiting for more if need be: a chunk of the tail,
    /// or else a stream of the session's data or of the stored blob.
    async fn open(&mut self) -> io::Result<Next> {
        let mut rx = self.flight.progress.clone();
        loop {
            let p = rx.borrow_and_update().clone();
            match &p.done {
                Some(Ok(())) => {
                    let range = BlobRange {
                        start: self.pos,
                        end: self.end - 1,
                    };
                    return self
                        .content
                        .open_blob(&self.digest, Some(range))
                        .await
                        .map(|stream| Next::Stream(stream, self.end))
                        .map_err(io::Error::other);
                }
                Some(Err(e)) => return Err(io::Error::other(e.clone())),
                None if p.received > self.pos => {
                    let held = self.flight.lock_tail().at(self.pos, self.end);
                    if let Some(chunk) = held {
                        return Ok(Next::Chunk(chunk));
                    }
                    // Behind the tail, which starts where the session is readable.
                    if p.written <= self.pos {
                        // The tail moved on (or was let go) since `p` was read: the progress
                        // that says so has been sent, or is about to be.
                        if rx.changed().await.is_err() {
                            return Err(io::Error::other("the upstream fetch stopped"));
                        }
                        continue;
                    }
                    let len = (p.written.min(self.end) - self.pos).min(FOLLOW_WINDOW);
                    let f = &self.flight;
                    match self
                        .content
                        .read_upload(&f.name, &f.upload, self.pos, len)
                        .await
                    {
                        Ok(stream) => return Ok(Next::Stream(stream, self.pos + len)),
                        // Committed (or discarded) meanwhile: the next round says which.
                        Err(e) if matches!(&e, crate::content::ContentError::Storage(s) if s.is_not_found()) => {
                            if rx.changed().await.is_err() {
                                return Err(io::Error::other("the upstream fetch stopped"));
                            }
                        }
                        Err(e) => return Err(io::Error::other(e)),
                    }
                }
                None => {
                    if rx.changed().await.is_err() {
                        return Err(io::Error::other("the upstream fetch stopped"));
                    }
                }
            }
        }
    }
}

/// The next part of a client's bytes.
enum Next {
    Chunk(Bytes),
    /// A stream, and the position where it ends.
    Stream(ByteStream, u64),
}

impl Flight {
    fn lock_tail(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The task that fetches one blob.
struct Fetch {
    flight: Arc<Flight>,
    content: Content,
    upstream: Arc<Upstream>,
    name: RepoName,
    remote: String,
    digest: Digest,
    upload: String,
}

impl Fetch {
    async fn run(
        self,
        mut writer: Box<dyn crate::storage::FileWriter>,
        tx: watch::Sender<Progress>,
    ) {
        let hashed = super::verify::start(
            self.flight.clone(),
            self.content.clone(),
            self.digest.clone(),
        );
        let result = match self.copy(&mut writer, &tx).await {
            Ok(()) => match tokio::join!(writer.commit(), hashed) {
                (Ok(()), Ok(actual)) => self
                    .content
                    .commit_upload(&self.name, &self.upload, &self.digest, actual)
                    .await
                    .map_err(|e| e.to_string()),
                (Err(e), _) => Err(e.to_string()),
                (_, Err(e)) => Err(e),
            },
            Err(e) => {
                let _ = writer.cancel().await;
                Err(e)
            }
        };
        // Clients read the stored blob from now on, or get the error.
        self.flight.lock_tail().clear();
        if let Err(e) = &result {
            tracing::warn!(upstream = %self.upstream.host, repository = %self.remote, digest = %self.digest, error = %e, "blob fetch failed; nothing was cached");
            let _ = self.content.discard_upload(&self.name, &self.upload).await;
        }
        tx.send_modify(|p| p.done = Some(result));
    }

    /// Streams the upstream body into `writer` and the tail.
    async fn copy(
        &self,
        writer: &mut Box<dyn crate::storage::FileWriter>,
        tx: &watch::Sender<Progress>,
    ) -> Result<(), String> {
        let path = format!("/v2/{}/blobs/{}", self.remote, self.digest);
        let resp = self
            .upstream
            .send(axum::http::Method::GET, &path, &self.remote, &[])
            .await
            .map_err(|e| e.to_string())?;
        let size = resp
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        tx.send_modify(|p| p.size = size);
        let mut body = resp.into_body();
        let (mut received, mut readable, mut unflushed) = (0u64, 0u64, 0usize);
        // On storage that cannot be read while written (S3), the tail still lets go of old
        // chunks; a client that falls that far behind waits for the stored blob.
        let follows = self.content.follows_writes();
        loop {
            let frame = tokio::time::timeout(BODY_IDLE, body.frame())
                .await
                .map_err(|_| {
                    format!(
                        "upstream sent nothing for {} s after {received} bytes",
                        BODY_IDLE.as_secs()
                    )
                })?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| format!("upstream body: {e}"))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            // Clients (and the digest's reader) get the chunk now, while it is written.
            received += data.len() as u64;
            let trim_to = if follows { readable } else { received };
            self.flight.lock_tail().push(data.clone(), trim_to);
            tx.send_modify(|p| p.received = received);
            unflushed += data.len();
            writer.write(data).await.map_err(|e| e.to_string())?;
            if unflushed >= FLUSH_EVERY {
                readable = writer.flush().await.map_err(|e| e.to_string())?;
                // Published before the tail lets go of these bytes.
                tx.send_modify(|p| p.written = readable);
                unflushed = 0;
            }
        }
        if let Some(size) = size
            && received != size
        {
            return Err(format!(
                "upstream sent {received} of {size} bytes before closing"
            ));
        }
        if size.is_none() {
            tx.send_modify(|p| p.size = Some(received));
        }
        // Twice: the first starts the last batch, the second waits for it.
        writer.flush().await.map_err(|e| e.to_string())?;
        let readable = writer.flush().await.map_err(|e| e.to_string())?;
        tx.send_modify(|p| p.written = readable);
        self.flight.lock_tail().trim(readable);
        super::metrics::ProxyMetrics::count(
            &self.upstream.metrics.pulled_bytes,
            &self.upstream.host,
            "blob",
            received,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Data cut short under a reader (a failed fetch truncates its session) is an error for
    /// that reader, never a loop that opens the same window again and again.
    #[test]
    fn a_session_cut_short_under_a_reader_is_an_error() {
        // On a thread of its own: a reader that spins never yields, and would stall any
        // timeout on its runtime (and the runtime's shutdown).
        let (done, outcome) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _ = done.send(rt.block_on(read_cut_short_session()));
        });
        let (got, error) = outcome
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the reader spun instead of failing");
        assert_eq!(got, b"0123456789");
        assert_eq!(error, Some(io::ErrorKind::UnexpectedEof));
    }

    async fn read_cut_short_session() -> (Vec<u8>, Option<io::ErrorKind>) {
        let driver = Arc::new(crate::storage::memory::MemoryDriver::new());
        let content = Content::new(driver, Default::default());
        let name: RepoName = "library/app".parse().unwrap();
        let (upload, mut writer) = content.open_upload(&name).await.unwrap();
        writer
            .write(Bytes::from_static(b"0123456789"))
            .await
            .unwrap();
        writer.flush().await.unwrap();
        writer.flush().await.unwrap();
        // The fetch says 100 bytes are readable, but the session holds 10.
        let (_tx, rx) = watch::channel(Progress {
            size: Some(100),
            received: 100,
            written: 100,
            done: None,
        });
        let flight = Arc::new(Flight {
            name,
            upload,
            progress: rx,
            tail: Mutex::default(),
        });
        let digest: Digest = format!("sha256:{}", "0".repeat(64)).parse().unwrap();
        let mut bytes = flight.stream(content, digest, BlobRange { start: 0, end: 99 });
        let mut got = Vec::new();
        while let Some(chunk) = bytes.next().await {
            match chunk {
                Ok(chunk) => got.extend_from_slice(&chunk),
                Err(e) => return (got, Some(e.kind())),
            }
        }
        (got, None)
    }
}
