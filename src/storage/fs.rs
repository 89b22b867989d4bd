//! Filesystem driver: keys map to files under a root directory, exactly as
//! distribution's filesystem driver lays them out. Small objects are written to a temp file
//! in `<root>/.dockyard-tmp` (outside distribution's tree), fsynced and renamed into place, so
//! a crash leaves temp files only there, where [`FsDriver::remove_stale_temp_files`] finds
//! them. Large reads and writes run on blocking threads in big chunks.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::{
    ByteStream, Driver, Entry, FileInfo, FileWriter, Result, Resume, StorageError, check_path,
};
use crate::fsutil::{sync_dir, write_atomic};

/// Size of each read from a blob file when streaming it out.
const READ_CHUNK: usize = 512 << 10;
/// Bytes gathered before one write to disk is issued.
const WRITE_BATCH: usize = 1 << 20;
/// Where atomic writes stage their content, under the root.
const TEMP_DIR: &str = ".dockyard-tmp";

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

    /// Fails unless this process can create files under the root (where writes are staged).
    pub fn check_writable(&self) -> io::Result<()> {
        let dir = self.root.join(TEMP_DIR);
        fs::create_dir_all(&dir)?;
        let probe = dir.join(format!(".tmp-probe-{}", std::process::id()));
        File::create(&probe)?;
        fs::remove_file(&probe)
    }

    /// Removes temp files older than `age` that crashed writes left behind (younger ones may
    /// belong to a write in progress, here or in another process sharing the root).
    /// Returns how many were removed.
    pub fn remove_stale_temp_files(&self, age: std::time::Duration) -> io::Result<usize> {
        let entries = match fs::read_dir(self.root.join(TEMP_DIR)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries.filter_map(|e| e.ok()) {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|e| e >= age));
            if stale && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
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
        let staging = self.root.join(TEMP_DIR);
        blocking(path, move || write_atomic(&staging, &full, &content)).await
    }

    async fn reader(&self, path: &str, offset: u64, len: Option<u64>) -> Result<ByteStream> {
        let full = self.full(path)?;
        let file = blocking(path, move || {
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
                let mut buf = BytesMut::with_capacity(want);
                match read_into(&file, &mut buf, want) {
                    Ok(0) => break,
                    Ok(n) => {
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

    async fn writer(&self, path: &str, resume: Option<&Resume>) -> Result<Box<dyn FileWriter>> {
        let full = self.full(path)?;
        let keep = resume.map_or(0, |r| r.size);
        let (file, size) = blocking(path, move || {
            if let Some(parent) = full.parent() {
                fs::create_dir_all(parent)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .truncate(false)
                .open(&full)?;
            let found = file.metadata()?.len();
            if found < keep {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{found} bytes where {keep} were written and closed"),
                ));
            }
            // Bytes past the last close belong to a writer that never finished.
            if found > keep {
                file.set_len(keep)?;
            }
            Ok((file, keep))
        })
        .await?;
        let p = path.to_owned();
        Ok(Box::new(FsWriter {
            full_path: self.full(path)?,
            path: p,
            file: Some(file),
            batch: Vec::new(),
            batch_len: 0,
            opened_size: size,
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

    async fn list(&self, path: &str) -> Result<Vec<Entry>> {
        let full = self.full(path)?;
        blocking(path, move || {
            let mut entries = fs::read_dir(&full)?
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    // d_type from readdir: no stat per entry (a symlink is followed).
                    let is_dir = match e.file_type().ok()? {
                        t if t.is_symlink() => e.path().is_dir(),
                        t => t.is_dir(),
                    };
                    Some(Entry { name, is_dir })
                })
                .filter(|e| !e.name.starts_with(".tmp-"))
                .collect::<Vec<_>>();
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(entries)
        })
        .await
    }

    async fn delete_objects(&self, paths: Vec<String>) -> Result<()> {
        let full: Vec<PathBuf> = paths.iter().map(|p| self.full(p)).collect::<Result<_>>()?;
        blocking(paths.first().map_or("/", |p| p), move || {
            for file in &full {
                match fs::remove_file(file) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                // Directories are implied by what is in them: one left empty goes too.
                if let Some(parent) = file.parent() {
                    let _ = fs::remove_dir(parent);
                }
            }
            Ok(())
        })
        .await
    }

    async fn put_if_absent(&self, path: &str, content: Bytes) -> Result<bool> {
        let full = self.full(path)?;
        blocking(path, move || {
            let parent = full
                .parent()
                .ok_or_else(|| io::Error::other("path has no parent"))?;
            fs::create_dir_all(parent)?;
            // Written whole beside the target, then hard-linked: link(2) fails if the name
            // exists, so exactly one of several racing creators succeeds.
            let temp = parent.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
            let written = File::create(&temp).and_then(|mut f| {
                f.write_all(&content)?;
                f.sync_all()
            });
            let linked = written.and_then(|()| fs::hard_link(&temp, &full));
            let _ = fs::remove_file(&temp);
            match linked {
                Ok(()) => sync_dir(parent).map(|()| true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    fn walk(&self, path: &str) -> futures::stream::BoxStream<'static, Result<(String, FileInfo)>> {
        let (root, start) = match self.full(path) {
            Ok(full) => (self.root.clone(), full),
            Err(e) => return futures::stream::once(async { Err(e) }).boxed(),
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(String, FileInfo)>>(256);
        tokio::task::spawn_blocking(move || walk_tree(&root, &start, &tx));
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
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

/// Sends every file below `dir` (depth first) as a driver path relative to `root`.
fn walk_tree(root: &Path, dir: &Path, tx: &tokio::sync::mpsc::Sender<Result<(String, FileInfo)>>) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            let _ = tx.blocking_send(Err(StorageError::io(&dir.display().to_string(), e)));
            return;
        }
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            continue;
        }
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk_tree(root, &path, tx);
            continue;
        }
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let info = FileInfo {
            size: meta.len(),
            modified: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
            is_dir: false,
        };
        if tx
            .blocking_send(Ok((format!("/{}", rel.display()), info)))
            .is_err()
        {
            return;
        }
    }
}

/// Reads up to `want` bytes into the spare capacity of `buf`, without zeroing it first (blob
/// reads are the server's hottest path).
fn read_into(file: &File, buf: &mut BytesMut, want: usize) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    buf.reserve(want);
    let spare = buf.spare_capacity_mut();
    let want = want.min(spare.len());
    // SAFETY: read(2) writes at most `want` bytes into the spare capacity, which is valid for
    // writes of that many bytes; the length then grows by what it reports to have written.
    let n = unsafe { libc::read(file.as_raw_fd(), spare.as_mut_ptr().cast(), want) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: the first `n` bytes of the spare capacity were initialised by read(2).
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

fn tokio_stream_from(mut rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>) -> ByteStream {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

/// Appends to a file in large batches; one batch is written on a blocking thread while
/// the next one is gathered, so hashing (done by the caller) and disk writes overlap.
struct FsWriter {
    path: String,
    full_path: PathBuf,
    file: Option<File>,
    batch: Vec<Bytes>,
    batch_len: usize,
    /// The file's size when the writer was opened, restored by `cancel`.
    opened_size: u64,
    size: u64,
    /// The batch being written; the file comes back even when the write failed, so that
    /// `cancel` can still truncate it.
    pending: Option<JoinHandle<(File, io::Result<()>)>>,
}

impl FsWriter {
    async fn wait_pending(&mut self) -> Result<()> {
        if let Some(handle) = self.pending.take() {
            let (file, written) = handle
                .await
                .map_err(|e| StorageError::io(&self.path, io::Error::other(e)))?;
            self.file = Some(file);
            written.map_err(|e| StorageError::io(&self.path, e))?;
        }
        Ok(())
    }

    /// Writes what is batched and syncs it; on failure the file is cut back to its size
    /// when the writer opened it (a full disk gets its space back).
    async fn persist(&mut self) -> Result<()> {
        let flushed = match self.flush_batch().await {
            Ok(()) => self.wait_pending().await,
            Err(e) => Err(e),
        };
        let file = self
            .file
            .take()
            .ok_or_else(|| StorageError::io(&self.path, io::Error::other("writer closed")))?;
        let size = self.opened_size;
        let synced = match flushed {
            Ok(()) => blocking(&self.path, move || file.sync_data().map(|()| file)).await,
            Err(e) => {
                let _ = blocking(&self.path, move || file.set_len(size)).await;
                return Err(e);
            }
        };
        match synced {
            Ok(_) => Ok(()),
            Err(e) => {
                let path = self.full_path.clone();
                let _ = blocking(&self.path, move || {
                    OpenOptions::new().write(true).open(path)?.set_len(size)
                })
                .await;
                Err(e)
            }
        }
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
            let written = batch.iter().try_for_each(|chunk| file.write_all(chunk));
            (file, written)
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

    async fn close(mut self: Box<Self>) -> Result<Resume> {
        self.persist().await?;
        Ok(Resume {
            size: self.size,
            token: None,
        })
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        self.persist().await
    }

    async fn flush(&mut self) -> Result<u64> {
        // The batch started now is written while the caller goes on; what came before it is
        // in the file.
        let starting = self.batch_len as u64;
        self.flush_batch().await?;
        Ok(self.size - starting)
    }

    async fn cancel(mut self: Box<Self>) -> Result<()> {
        self.batch.clear();
        // A failed batch is what is being cancelled: its error does not matter here.
        let _ = self.wait_pending().await;
        let file = self
            .file
            .take()
            .ok_or_else(|| StorageError::io(&self.path, io::Error::other("writer closed")))?;
        let size = self.opened_size;
        blocking(&self.path, move || {
            file.set_len(size)?;
            file.sync_data()
        })
        .await
    }
}
