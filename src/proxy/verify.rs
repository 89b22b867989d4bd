//! The digest of a blob being fetched, computed behind the transfer on a thread of its own at
//! lower priority. While clients, the upstream and the disk compete for the CPU, the hash
//! waits for idle time instead of slowing the transfer; it reads what the fetch received like
//! any client (from the in-memory tail, or the session's data once behind), so memory stays
//! bounded. The fetch commits the blob only when this digest matches. One thread per fetch in
//! progress: fetches are network-bound and few at a time, and a thread lives as long as its
//! fetch.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;

use super::flight::Flight;
use crate::content::{BlobRange, Content};
use crate::oci::Digest;

/// Starts hashing what the fetch of `digest` receives; the future gives the digest of all of
/// it. Where no thread can start, the hash runs in the awaiting task instead.
pub fn start(
    flight: Arc<Flight>,
    content: Content,
    digest: Digest,
) -> impl Future<Output = Result<Digest, String>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job = {
        let (flight, content, digest) = (flight.clone(), content.clone(), digest.clone());
        let handle = tokio::runtime::Handle::current();
        move || {
            crate::sys::lower_thread_priority();
            let _ = tx.send(handle.block_on(follow(flight, content, digest)));
        }
    };
    let spawned = std::thread::Builder::new()
        .name("dockyard-digest".into())
        .spawn(job);
    async move {
        match spawned {
            Ok(_) => rx
                .await
                .unwrap_or_else(|_| Err("the digest thread stopped".into())),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a digest thread; hashing in the fetch");
                follow(flight, content, digest).await
            }
        }
    }
}

/// Reads the fetched bytes from the start as they arrive, and hashes them.
async fn follow(flight: Arc<Flight>, content: Content, digest: Digest) -> Result<Digest, String> {
    let mut hasher = digest.algorithm().hasher();
    let size = flight.size().await?;
    if size > 0 {
        let range = BlobRange {
            start: 0,
            end: size - 1,
        };
        let mut bytes = flight.stream(content, digest, range);
        while let Some(chunk) = bytes.next().await {
            hasher.update(&chunk.map_err(|e| e.to_string())?);
        }
    }
    Ok(hasher.finish())
}
