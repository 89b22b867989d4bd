//! A decorator over any [`Driver`] that times every operation into registry:2's histogram
//! `registry_storage_action_seconds{driver,action}`, with registry:2's action names where it
//! has them (`GetContent`, `PutContent`, `Stat`, `List`, `Move`, `Delete`) and Dockyard's
//! for the rest. It forwards everything else unchanged. `serve` wraps the configured driver
//! in it once.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::{ByteStream, Driver, Entry, FileInfo, FileWriter, Result, Resume};

/// What is timed: the driver's methods, and finishing a writer.
#[derive(Debug, Clone, Copy)]
enum Action {
    GetContent,
    PutContent,
    PutIfAbsent,
    /// Opening a reader (an object store's request, up to its first byte).
    Reader,
    /// Opening a writer.
    Writer,
    Stat,
    List,
    /// [`Driver::rename`], under registry:2's name.
    Move,
    Delete,
    /// [`Driver::delete_objects`]: a batch.
    DeleteObjects,
    /// A whole [`Driver::walk`], until its stream is dropped.
    Walk,
    /// [`Driver::url_for`], under registry:2's name.
    UrlFor,
    /// [`FileWriter::close`], [`FileWriter::commit`] and [`FileWriter::cancel`].
    WriterClose,
    WriterCommit,
    WriterCancel,
}

const ACTIONS: [Action; 15] = [
    Action::GetContent,
    Action::PutContent,
    Action::PutIfAbsent,
    Action::Reader,
    Action::Writer,
    Action::Stat,
    Action::List,
    Action::Move,
    Action::Delete,
    Action::DeleteObjects,
    Action::Walk,
    Action::UrlFor,
    Action::WriterClose,
    Action::WriterCommit,
    Action::WriterCancel,
];

impl Action {
    fn label(self) -> &'static str {
        match self {
            Action::GetContent => "GetContent",
            Action::PutContent => "PutContent",
            Action::PutIfAbsent => "PutIfAbsent",
            Action::Reader => "Reader",
            Action::Writer => "Writer",
            Action::Stat => "Stat",
            Action::List => "List",
            Action::Move => "Move",
            Action::Delete => "Delete",
            Action::DeleteObjects => "DeleteObjects",
            Action::Walk => "Walk",
            Action::UrlFor => "URLFor",
            Action::WriterClose => "WriterClose",
            Action::WriterCommit => "WriterCommit",
            Action::WriterCancel => "WriterCancel",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
    driver: &'static str,
}

/// Prometheus's default buckets, which registry:2's storage timer uses.
fn action_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// `registry_storage_action_seconds`, shared by every [`Metered`] driver of a server.
#[derive(Clone)]
pub struct StorageMetrics {
    actions: Family<ActionLabels, Histogram, fn() -> Histogram>,
}

impl StorageMetrics {
    /// The histogram, registered in `registry`.
    pub fn new(registry: &mut Registry) -> StorageMetrics {
        let metrics = StorageMetrics {
            actions: Family::new_with_constructor(action_histogram),
        };
        registry.register(
            "registry_storage_action_seconds",
            "The number of seconds that the storage action takes",
            metrics.actions.clone(),
        );
        metrics
    }
}

/// One histogram per [`Action`] of one driver, looked up once.
struct Timers([Histogram; ACTIONS.len()]);

impl Timers {
    fn observe(&self, action: Action, started: Instant) {
        self.0[action as usize].observe(started.elapsed().as_secs_f64());
    }

    async fn time<T>(&self, action: Action, operation: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = operation.await;
        self.observe(action, started);
        out
    }
}

/// `inner`, timed. The `driver` label is the inner driver's [`Driver::name`].
pub struct Metered<D: ?Sized> {
    inner: Arc<D>,
    timers: Arc<Timers>,
}

impl<D: Driver + ?Sized> Metered<D> {
    pub fn new(inner: Arc<D>, metrics: &StorageMetrics) -> Metered<D> {
        let driver = inner.name();
        let timers = ACTIONS.map(|action| {
            let labels = ActionLabels {
                action: action.label(),
                driver,
            };
            metrics.actions.get_or_create_owned(&labels)
        });
        Metered {
            inner,
            timers: Arc::new(Timers(timers)),
        }
    }
}

#[async_trait]
impl<D: Driver + ?Sized> Driver for Metered<D> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn get_content(&self, path: &str) -> Result<Bytes> {
        let operation = self.inner.get_content(path);
        self.timers.time(Action::GetContent, operation).await
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<()> {
        let operation = self.inner.put_content(path, content);
        self.timers.time(Action::PutContent, operation).await
    }

    async fn put_if_absent(&self, path: &str, content: Bytes) -> Result<bool> {
        let operation = self.inner.put_if_absent(path, content);
        self.timers.time(Action::PutIfAbsent, operation).await
    }

    async fn reader(&self, path: &str, offset: u64, len: Option<u64>) -> Result<ByteStream> {
        let operation = self.inner.reader(path, offset, len);
        self.timers.time(Action::Reader, operation).await
    }

    async fn writer(&self, path: &str, resume: Option<&Resume>) -> Result<Box<dyn FileWriter>> {
        let operation = self.inner.writer(path, resume);
        let inner = self.timers.time(Action::Writer, operation).await?;
        Ok(Box::new(MeteredWriter {
            inner,
            timers: self.timers.clone(),
        }))
    }

    async fn stat(&self, path: &str) -> Result<FileInfo> {
        let operation = self.inner.stat(path);
        self.timers.time(Action::Stat, operation).await
    }

    async fn stat_object(&self, path: &str) -> Result<FileInfo> {
        let operation = self.inner.stat_object(path);
        self.timers.time(Action::Stat, operation).await
    }

    async fn list(&self, path: &str) -> Result<Vec<Entry>> {
        let operation = self.inner.list(path);
        self.timers.time(Action::List, operation).await
    }

    async fn rename(&self, src: &str, dst: &str) -> Result<()> {
        let operation = self.inner.rename(src, dst);
        self.timers.time(Action::Move, operation).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let operation = self.inner.delete(path);
        self.timers.time(Action::Delete, operation).await
    }

    async fn delete_objects(&self, paths: Vec<String>) -> Result<()> {
        let operation = self.inner.delete_objects(paths);
        self.timers.time(Action::DeleteObjects, operation).await
    }

    fn walk(&self, path: &str) -> BoxStream<'static, Result<(String, FileInfo)>> {
        let timed = ObserveOnDrop {
            timers: self.timers.clone(),
            action: Action::Walk,
            started: Instant::now(),
        };
        self.inner
            .walk(path)
            .map(move |item| {
                let _until_dropped = &timed;
                item
            })
            .boxed()
    }

    async fn url_for(&self, path: &str, expires: Duration) -> Result<Option<String>> {
        let operation = self.inner.url_for(path, expires);
        self.timers.time(Action::UrlFor, operation).await
    }

    fn commits_atomically(&self) -> bool {
        self.inner.commits_atomically()
    }

    fn follows_writes(&self) -> bool {
        self.inner.follows_writes()
    }
}

/// Observes the time since `started` when dropped: a stream's whole life.
struct ObserveOnDrop {
    timers: Arc<Timers>,
    action: Action,
    started: Instant,
}

impl Drop for ObserveOnDrop {
    fn drop(&mut self) {
        self.timers.observe(self.action, self.started);
    }
}

/// A writer whose `close`, `commit` and `cancel` are timed.
struct MeteredWriter {
    inner: Box<dyn FileWriter>,
    timers: Arc<Timers>,
}

#[async_trait]
impl FileWriter for MeteredWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.inner.write(data).await
    }

    fn size(&self) -> u64 {
        self.inner.size()
    }

    async fn flush(&mut self) -> Result<u64> {
        self.inner.flush().await
    }

    async fn close(self: Box<Self>) -> Result<Resume> {
        let MeteredWriter { inner, timers } = *self;
        timers.time(Action::WriterClose, inner.close()).await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        let MeteredWriter { inner, timers } = *self;
        timers.time(Action::WriterCommit, inner.commit()).await
    }

    async fn cancel(self: Box<Self>) -> Result<()> {
        let MeteredWriter { inner, timers } = *self;
        timers.time(Action::WriterCancel, inner.cancel()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryDriver;

    fn metered_memory() -> Metered<MemoryDriver> {
        let mut registry = Registry::default();
        Metered::new(
            Arc::new(MemoryDriver::new()),
            &StorageMetrics::new(&mut registry),
        )
    }

    /// The decorator changes no behaviour: it passes the suite every driver passes.
    mod conformance {
        use super::*;
        crate::driver_conformance!(metered_memory());
    }

    /// The count of `registry_storage_action_seconds` samples with these labels.
    fn count(text: &str, action: &str, driver: &str) -> u64 {
        let prefix = format!(
            "registry_storage_action_seconds_count{{action=\"{action}\",driver=\"{driver}\"}} "
        );
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
    }

    #[tokio::test]
    async fn every_operation_is_timed_under_its_action() {
        let mut registry = Registry::default();
        let metrics = StorageMetrics::new(&mut registry);
        let driver = Metered::new(Arc::new(MemoryDriver::new()), &metrics);
        driver
            .put_content("/a/b", Bytes::from_static(b"x"))
            .await
            .unwrap();
        driver.get_content("/a/b").await.unwrap();
        driver.get_content("/a/missing").await.unwrap_err();
        driver.stat("/a/b").await.unwrap();
        driver.list("/a").await.unwrap();
        driver.rename("/a/b", "/a/c").await.unwrap();
        assert!(driver.put_if_absent("/a/d", Bytes::new()).await.unwrap());
        let mut writer = driver.writer("/w", None).await.unwrap();
        writer.write(Bytes::from_static(b"data")).await.unwrap();
        writer.commit().await.unwrap();
        drop(driver.reader("/w", 0, None).await.unwrap());
        let walked: Vec<_> = driver.walk("/a").collect().await;
        assert_eq!(walked.len(), 2);
        assert_eq!(
            driver.url_for("/w", Duration::from_secs(60)).await.unwrap(),
            None
        );
        let batch = vec!["/a/c".to_owned(), "/a/gone".to_owned()];
        driver.delete_objects(batch).await.unwrap();
        driver.delete("/a").await.unwrap();

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for (action, n) in [
            ("PutContent", 1),
            ("GetContent", 2),
            ("Stat", 1),
            ("List", 1),
            ("Move", 1),
            ("PutIfAbsent", 1),
            ("Writer", 1),
            ("WriterCommit", 1),
            ("WriterClose", 0),
            ("Reader", 1),
            ("Walk", 1),
            ("URLFor", 1),
            ("Delete", 1),
            ("DeleteObjects", 1),
        ] {
            assert_eq!(count(&text, action, "inmemory"), n, "{action}");
        }
    }

    #[tokio::test]
    async fn defaulted_methods_are_the_inner_drivers() {
        let options = crate::storage::s3::S3Options {
            bucket: "b".into(),
            region: Some("us-east-1".into()),
            endpoint: Some("http://127.0.0.1:9".into()),
            access_key: Some("k".into()),
            secret_key: Some("s".into()),
            session_token: None,
            root: String::new(),
            secure: false,
            skip_verify: false,
            force_path_style: true,
            chunk_size: 5 << 20,
            encrypt: false,
            key_id: None,
            storage_class: None,
            user_agent: None,
        };
        let s3 = crate::storage::s3::S3Driver::new(&options).unwrap();
        let mut registry = Registry::default();
        let metrics = StorageMetrics::new(&mut registry);
        let s3 = Metered::new(Arc::new(s3), &metrics);
        assert!(!s3.follows_writes());
        assert!(s3.commits_atomically());
        assert_eq!(s3.name(), "s3");
        let url = s3.url_for("/a/b", Duration::from_secs(60)).await.unwrap();
        assert!(
            url.is_some_and(|u| u.contains("/b/a/b?")),
            "a presigned URL"
        );
        let memory = Metered::new(Arc::new(MemoryDriver::new()), &metrics);
        assert!(memory.follows_writes());
        assert!(!memory.commits_atomically());
        let url = memory
            .url_for("/a/b", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(url, None);
    }
}
