//! Filesystem driver: keys map to files under a root directory, exactly as
//! distribution's filesystem driver lays them out. Writes are temp file + fsync +
//! rename; large reads and writes run on blocking threads in big chunks.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::{ByteStream, Driver, FileInfo, FileWriter, Result, StorageError, check_path};

/// Size of each read from a blob file when streaming it out.
const READ_CHUNK: usize = 512 << 10;
/// Bytes gathered before one write to disk is issued.
const WRITE_BATCH: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct FsDriver {
    root: PathBuf,
}

impl FsDriver {
    pub fn new(root: impl Into<PathBuf>) -> FsDriver {
        FsDriver { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &str) -> Result<PathBuf> {
        check_path(path)?;
        Ok(self.root.join(path.trim_start_matches('/')))
    }
}

async fn blocking<T: Send + 'static>(
    path: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T> {
    let p = path.to_owned();
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| StorageError::io(&p, e)),
        Err(join) => Err(StorageError::io(&p, io::Error::other(join))),
    }
}

/// fsyncs a directory so a rename or create inside it survives a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn write_atomic(target: &Path, content: &[u8]) -> io::Result<()> {
    let parent = target
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent"))?;
    fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(content)?;
        f.sync_data()?;
        fs::rename(&tmp, target)?;
        sync_dir(parent)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[async_trait]
impl Driver for FsDriver {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    async fn get_content(&self, path: &str) -> Result<Bytes> {
        let full = self.full(path)?;
        tokio::fs::read(&full)
            .await
            .map(Bytes::from)
            .map_err(|e| StorageError::io(path, e))
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<()> {
        let full = self.full(path)?;
        blocking(path, move || write_atomic(&full, &content)).await
    }

    async fn reader(&self, path: &str, offset: u64, len: Option<u64>) -> Result<ByteStream> {
        let full = self.full(path)?;
        let mut file = blocking(path, move || {
            let mut f = File::open(&full)?;
            f.seek(SeekFrom::Start(offset))?;
            Ok(f)
        })
        .await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
        tokio::task::spawn_blocking(move || {
            let mut remaining = len.unwrap_or(u64::MAX);
            while remaining > 0 {
                let want = READ_CHUNK.min(usize::try_from(remaining).unwrap_or(usize::MAX));
                let mut buf = BytesMut::zeroed(want);
                match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        remaining -= n as u64;
                        if tx.blocking_send(Ok(buf.freeze())).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        Ok(tokio_stream_from(rx))
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWriter>> {
        let full = self.full(path)?;
        let (file, size) = blocking(path, move || {
            if let Some(parent) = full.parent() {
                fs::create_dir_all(parent)?;
            }
            let file = OpenOptions::new().create(true).append(true).open(&full)?;
            let size = file.metadata()?.len();
            Ok((file, size))
        })
        .await?;
        let p = path.to_owned();
        Ok(Box::new(FsWriter {
            path: p,
            file: Some(file),
            batch: Vec::new(),
            batch_len: 0,
            size,
            pending: None,
        }))
    }

    async fn stat(&self, path: &str) -> Result<FileInfo> {
        let full = self.full(path)?;
        let m = tokio::fs::metadata(&full)
            .await
            .map_err(|e| StorageError::io(path, e))?;
        Ok(FileInfo {
            size: m.len(),
            modified: m.modified().unwrap_or(std::time::UNIX_EPOCH),
            is_dir: m.is_dir(),
        })
    }

    async fn list(&self, path: &str) -> Result<Vec<String>> {
        let full = self.full(path)?;
        blocking(path, move || {
            let mut names = fs::read_dir(&full)?
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with(".tmp-"))
                .collect::<Vec<_>>();
            names.sort();
            Ok(names)
        })
        .await
    }

    async fn rename(&self, src: &str, dst: &str) -> Result<()> {
        let (from, to) = (self.full(src)?, self.full(dst)?);
        blocking(src, move || {
            let parent = to
                .parent()
                .ok_or_else(|| io::Error::other("path has no parent"))?;
            fs::create_dir_all(parent)?;
            fs::rename(&from, &to)?;
            sync_dir(parent)
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let full = self.full(path)?;
        blocking(path, move || {
            if fs::symlink_metadata(&full)?.is_dir() {
                fs::remove_dir_all(&full)
            } else {
                fs::remove_file(&full)
            }
        })
        .await
    }
}

fn tokio_stream_from(mut rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>) -> ByteStream {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

/// Appends to a file in large batches; one batch is written on a blocking thread while
/// the next one is gathered, so hashing (done by the caller) and disk writes overlap.
struct FsWriter {
    path: String,
    file: Option<File>,
    batch: Vec<Bytes>,
    batch_len: usize,
    size: u64,
    pending: Option<JoinHandle<io::Result<File>>>,
}

impl FsWriter {
    async fn wait_pending(&mut self) -> Result<()> {
        if let Some(handle) = self.pending.take() {
            let file = handle
                .await
                .map_err(|e| StorageError::io(&self.path, io::Error::other(e)))?
                .map_err(|e| StorageError::io(&self.path, e))?;
            self.file = Some(file);
        }
        Ok(())
    }

    async fn flush_batch(&mut self) -> Result<()> {
        self.wait_pending().await?;
        if self.batch.is_empty() {
            return Ok(());
        }
        let mut file = self
            .file
            .take()
            .ok_or_else(|| StorageError::io(&self.path, io::Error::other("writer closed")))?;
        let batch = std::mem::take(&mut self.batch);
        self.batch_len = 0;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            for chunk in &batch {
                file.write_all(chunk)?;
            }
            Ok(file)
        }));
        Ok(())
    }
}

#[async_trait]
impl FileWriter for FsWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.size += data.len() as u64;
        self.batch_len += data.len();
        self.batch.push(data);
        if self.batch_len >= WRITE_BATCH {
            self.flush_batch().await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        self.flush_batch().await?;
        self.wait_pending().await?;
        let file = self
            .file
            .take()
            .ok_or_else(|| StorageError::io(&self.path, io::Error::other("writer closed")))?;
        blocking(&self.path, move || file.sync_data()).await
    }
}
