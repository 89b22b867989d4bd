//! A storage driver for tests that need to see what a page asks of storage: the memory
//! driver, counting reads of tags' current links and listings of tag directories, and able
//! to hold those listings until the test lets them go (a slow object store).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use tokio::sync::Semaphore;

use crate::storage::memory::MemoryDriver;
use crate::storage::{ByteStream, Driver, Entry, FileInfo, FileWriter, Result, Resume};

#[derive(Default)]
pub struct Probe {
    inner: MemoryDriver,
    /// Stats and reads of `.../_manifests/tags/<tag>/current/link`.
    tag_reads: AtomicUsize,
    /// Listings of `.../_manifests/tags`.
    tag_listings: AtomicUsize,
    /// While set, tag listings wait for `gate` to close.
    held: AtomicBool,
    gate: Option<Semaphore>,
}

impl Probe {
    pub fn new() -> Arc<Probe> {
        Arc::new(Probe {
            gate: Some(Semaphore::new(0)),
            ..Probe::default()
        })
    }

    pub fn tag_reads(&self) -> usize {
        self.tag_reads.load(Ordering::SeqCst)
    }

    pub fn tag_listings(&self) -> usize {
        self.tag_listings.load(Ordering::SeqCst)
    }

    pub fn reset(&self) {
        self.tag_reads.store(0, Ordering::SeqCst);
        self.tag_listings.store(0, Ordering::SeqCst);
    }

    /// From now on, tag listings wait until [`Probe::release`].
    pub fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
    }

    pub fn release(&self) {
        self.held.store(false, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.close();
        }
    }

    fn note_read(&self, path: &str) {
        if path.contains("/_manifests/tags/") && path.ends_with("/current/link") {
            self.tag_reads.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl Driver for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }

    async fn get_content(&self, path: &str) -> Result<Bytes> {
        self.note_read(path);
        self.inner.get_content(path).await
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<()> {
        self.inner.put_content(path, content).await
    }

    async fn reader(&self, path: &str, offset: u64, len: Option<u64>) -> Result<ByteStream> {
        self.inner.reader(path, offset, len).await
    }

    async fn writer(&self, path: &str, resume: Option<&Resume>) -> Result<Box<dyn FileWriter>> {
        self.inner.writer(path, resume).await
    }

    async fn stat(&self, path: &str) -> Result<FileInfo> {
        self.note_read(path);
        self.inner.stat(path).await
    }

    async fn stat_object(&self, path: &str) -> Result<FileInfo> {
        self.note_read(path);
        self.inner.stat_object(path).await
    }

    async fn list(&self, path: &str) -> Result<Vec<Entry>> {
        if path.ends_with("/_manifests/tags") {
            self.tag_listings.fetch_add(1, Ordering::SeqCst);
            if self.held.load(Ordering::SeqCst)
                && let Some(gate) = &self.gate
            {
                // Closed by `release`: the wait ends with an error, on purpose.
                let _ = gate.acquire().await;
            }
        }
        self.inner.list(path).await
    }

    async fn rename(&self, src: &str, dst: &str) -> Result<()> {
        self.inner.rename(src, dst).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.inner.delete(path).await
    }

    async fn put_if_absent(&self, path: &str, content: Bytes) -> Result<bool> {
        self.inner.put_if_absent(path, content).await
    }

    fn walk(&self, path: &str) -> BoxStream<'static, Result<(String, FileInfo)>> {
        self.inner.walk(path)
    }
}
