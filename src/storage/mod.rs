//! Storage drivers: a small trait over a hierarchical object namespace, and its
//! implementations. Keys are built only by [`layout`]; drivers never interpret them.
//! Every driver passes the same conformance suite (`tests.rs`).

#[doc(hidden)]
pub mod conformance;
pub mod fs;
pub mod layout;
pub mod memory;
pub mod metered;
pub mod s3;
#[cfg(test)]
mod tests;

use std::io;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// A stream of bytes read from storage.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("path not found: {0}")]
    NotFound(String),
    #[error("invalid storage path {0:?}")]
    InvalidPath(String),
    #[error("storage I/O error on {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("no space left on the storage device (or quota exceeded) writing {path}")]
    Full { path: String },
}

impl StorageError {
    pub fn io(path: &str, source: io::Error) -> StorageError {
        let full = matches!(
            source.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        ) || matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT));
        if source.kind() == io::ErrorKind::NotFound {
            StorageError::NotFound(path.to_owned())
        } else if full {
            StorageError::Full {
                path: path.to_owned(),
            }
        } else {
            StorageError::Io {
                path: path.to_owned(),
                source,
            }
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound(_))
    }
}

/// A direct child of a directory, as [`Driver::list`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// Whether it has children (on an object store, a key prefix). A name that is both an
    /// object and a prefix is a directory.
    pub is_dir: bool,
}

/// Where an appendable object was left by [`FileWriter::close`]: pass it back to
/// [`Driver::writer`] to go on appending. Callers persist it; only the driver that made it
/// interprets `token`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resume {
    /// The object's size: every byte written before the `close` that returned this.
    pub size: u64,
    /// The driver's own bookkeeping (an object store's multipart upload and its parts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Metadata of an object or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub size: u64,
    pub modified: SystemTime,
    pub is_dir: bool,
}

/// The operations the registry needs from a storage backend. Paths are `/`-separated
/// keys starting with `/`, produced by [`layout`]. A method added here, defaulted or not,
/// is also forwarded by the decorator [`metered::Metered`].
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// A short name for logs, e.g. "filesystem".
    fn name(&self) -> &'static str;
    /// Reads a whole small object (a link file or a manifest).
    async fn get_content(&self, path: &str) -> Result<Bytes>;
    /// Atomically and durably replaces the object at `path`, creating parents.
    async fn put_content(&self, path: &str, content: Bytes) -> Result<()>;
    /// Streams the object from `offset`, `len` bytes or to its end.
    async fn reader(&self, path: &str, offset: u64, len: Option<u64>) -> Result<ByteStream>;
    /// Opens a writer to the appendable object at `path`: a new, empty one, or with `resume`
    /// (from an earlier writer's [`FileWriter::close`], possibly in another process) the one
    /// that writer left, continuing after its last byte. Anything written after that `close`
    /// by writers that did not close or commit is not part of the object.
    async fn writer(&self, path: &str, resume: Option<&Resume>) -> Result<Box<dyn FileWriter>>;
    /// Size, modification time and kind of what is at `path`.
    async fn stat(&self, path: &str) -> Result<FileInfo>;
    /// Size and modification time of the object at `path`, never a directory: where
    /// [`Driver::stat`] of a missing key must also look for children (an object store's
    /// listing), this is one request.
    async fn stat_object(&self, path: &str) -> Result<FileInfo> {
        match self.stat(path).await {
            Ok(info) if info.is_dir => Err(StorageError::NotFound(path.to_owned())),
            other => other,
        }
    }
    /// The direct children of the directory at `path`, sorted by name.
    async fn list(&self, path: &str) -> Result<Vec<Entry>>;
    /// Moves `src` to `dst`, replacing `dst`; readers see the old or the new object, never a mix.
    async fn rename(&self, src: &str, dst: &str) -> Result<()>;
    /// Deletes the object or the whole tree at `path`, with any appendable objects in it
    /// that were never committed.
    async fn delete(&self, path: &str) -> Result<()>;
    /// Deletes these objects (not trees); ones already gone are fine. An object store
    /// deletes them a thousand to a request.
    async fn delete_objects(&self, paths: Vec<String>) -> Result<()> {
        for path in paths {
            match self.delete(&path).await {
                Err(e) if !e.is_not_found() => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
    /// Creates the object at `path` with `content` only if nothing is there: true if this
    /// call created it. Atomic across processes sharing the storage (a lock's basis).
    async fn put_if_absent(&self, path: &str, content: Bytes) -> Result<bool>;
    /// Every object below the directory at `path`, at any depth, with its metadata, in no
    /// particular order (an object store lists it flat, a page per thousand keys). Paths are
    /// full driver paths. Missing directory: nothing.
    fn walk(&self, path: &str) -> BoxStream<'static, Result<(String, FileInfo)>>;
    /// A URL from which a client can GET the object at `path` directly for `expires`, if
    /// this storage has such URLs (an object store's presigned ones). Clients are redirected
    /// there instead of streaming blobs through the registry.
    async fn url_for(&self, path: &str, expires: std::time::Duration) -> Result<Option<String>> {
        let _ = (path, expires);
        Ok(None)
    }
    /// Whether nothing a writer writes is visible at its path before [`FileWriter::commit`]
    /// (an object store's multipart upload), so a blob can be written in place and
    /// committed only once its digest checks out.
    fn commits_atomically(&self) -> bool {
        false
    }
    /// Whether [`FileWriter::flush`] makes bytes readable while they are written (an object
    /// store's multipart upload cannot be read before it completes).
    fn follows_writes(&self) -> bool {
        true
    }
}

/// An open append stream to one object. It ends in exactly one of `close` (more can be
/// appended later), `commit` (the object is complete) or `cancel`.
#[async_trait]
pub trait FileWriter: Send {
    /// Appends `data`; it may be buffered until `close` or `commit`.
    async fn write(&mut self, data: Bytes) -> Result<()>;
    /// Size of the object including everything written so far.
    fn size(&self) -> u64;
    /// Starts making what was written so far readable through [`Driver::reader`] (not
    /// necessarily durable), for readers that follow a write in progress. Returns how many
    /// bytes of the object are readable now; a second call with nothing written in between
    /// makes all of them readable, where the driver can ([`Driver::follows_writes`]).
    async fn flush(&mut self) -> Result<u64>;
    /// Makes everything written durable and returns where a later writer goes on. The
    /// object may not be readable until a writer commits it. On failure the object is as
    /// the writer found it.
    async fn close(self: Box<Self>) -> Result<Resume>;
    /// Makes everything written durable and the object complete and readable at its path.
    /// On failure nothing written through this writer is kept.
    async fn commit(self: Box<Self>) -> Result<()>;
    /// Discards everything written through this writer: the object is as the writer found
    /// it (an earlier [`Resume`] still continues it).
    async fn cancel(self: Box<Self>) -> Result<()>;
}

/// Rejects keys that could escape the storage root.
pub(crate) fn check_path(path: &str) -> Result<()> {
    let ok = path.starts_with('/')
        && path
            .split('/')
            .skip(1)
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok || path == "/" {
        Ok(())
    } else {
        Err(StorageError::InvalidPath(path.to_owned()))
    }
}
