//! OCI semantics over a storage driver, with no HTTP types: blobs, upload sessions,
//! manifests, tags, referrers and the catalog. Handlers in `registry` call this layer;
//! it calls only [`crate::storage`].

pub mod blobs;
mod cache;
pub mod catalog;
#[cfg(test)]
mod catalog_tests;
mod evict;
mod gc;
#[cfg(test)]
mod gc_tests;
pub mod gclock;
pub mod manifests;
pub mod names;
pub mod referrers;
mod store;
#[cfg(test)]
mod tests;
pub mod uploads;

use std::io;
use std::sync::Arc;

use bytes::Bytes;

use crate::oci::{Digest, ManifestError, RepoName};
use crate::storage::{Driver, StorageError};

pub use blobs::{BlobRange, BlobWant, OpenedBlob, resolve_range};
pub use gc::{GcOptions, GcReport};
pub use manifests::{Manifest, PutManifest};
pub use names::{NameIndex, SearchPage};
pub use store::{Body, Store};
pub use uploads::{ChunkRange, UploadSessions};

/// Errors of the content layer; `registry::error` maps them to OCI codes.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("blob unknown to registry: {0}")]
    BlobUnknown(Digest),
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    #[error("repository name not known to registry: {0}")]
    NameUnknown(RepoName),
    #[error("upload session unknown: {0}")]
    UploadUnknown(String),
    #[error("digest mismatch: expected {expected}, content is {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("manifest invalid: {0}")]
    ManifestInvalid(#[from] ManifestError),
    #[error("manifest is {size} bytes, larger than the {limit}-byte limit")]
    ManifestTooLarge { size: u64, limit: u64 },
    #[error("manifest references {0}, which is not in the repository")]
    ManifestBlobUnknown(Digest),
    #[error("chunk starts at {given}, but the upload is at {expected}: upload chunks in order")]
    ChunkOutOfOrder { given: u64, expected: u64 },
    #[error(
        "chunk body length does not match its Content-Range: {declared} bytes declared, {received} received; the upload stays at {offset} bytes"
    )]
    ChunkLength {
        declared: u64,
        received: u64,
        offset: u64,
    },
    #[error("requested range not satisfiable: {range} of a {size}-byte blob")]
    RangeNotSatisfiable { range: String, size: u64 },
    #[error("request body ended early: {0}")]
    Body(io::Error),
    #[error("this registry is a pull-through cache: it does not accept pushes or deletes")]
    Mirror,
    #[error("{0}")]
    Upstream(#[from] crate::proxy::UpstreamError),
    #[error("{0}")]
    UnknownUpstream(#[from] crate::proxy::settings::RouteError),
    #[error("deleting is disabled on this registry (storage.delete.enabled)")]
    DeleteDisabled,
    #[error("the registry is in read-only mode (storage.maintenance.readonly)")]
    ReadOnly,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub type Result<T, E = ContentError> = std::result::Result<T, E>;

/// Limits and switches of the content layer.
#[derive(Debug, Clone)]
pub struct ContentOptions {
    pub delete_enabled: bool,
    pub max_manifest_size: u64,
    pub read_only: bool,
    /// A manifest push relying on a blob stored longer ago than this records the use, so
    /// that garbage collection keeps it; at most half the collector's grace window.
    pub protect_after: std::time::Duration,
    /// Send blob GETs to the storage's own URLs where it has them (registry:2's default;
    /// `storage.redirect.disable` turns it off).
    pub redirect: bool,
}

impl Default for ContentOptions {
    fn default() -> Self {
        ContentOptions {
            delete_enabled: false,
            max_manifest_size: 4 << 20,
            read_only: false,
            protect_after: std::time::Duration::from_secs(300),
            redirect: false,
        }
    }
}

/// The registry's content, backed by one storage driver.
#[derive(Clone)]
pub struct Content {
    pub(crate) driver: Arc<dyn Driver>,
    pub(crate) options: ContentOptions,
    uploads: Arc<UploadSessions>,
    manifests: Arc<cache::ManifestCache>,
    /// Every repository name, for the catalog and search.
    names: Arc<NameIndex>,
}

/// Bytes of manifests kept in memory.
const MANIFEST_CACHE_BYTES: usize = 16 << 20;

impl Content {
    pub fn new(driver: Arc<dyn Driver>, options: ContentOptions) -> Content {
        Content {
            uploads: Arc::new(UploadSessions::default()),
            manifests: Arc::new(cache::ManifestCache::new(MANIFEST_CACHE_BYTES)),
            names: Arc::new(NameIndex::default()),
            driver,
            options,
        }
    }

    pub fn driver_name(&self) -> &'static str {
        self.driver.name()
    }

    /// Whether blob bytes being written can be read before they are committed.
    pub(crate) fn follows_writes(&self) -> bool {
        self.driver.follows_writes()
    }

    /// Reads a link file; `None` if it does not exist.
    pub(crate) async fn read_link(&self, path: &str) -> Result<Option<Digest>> {
        match self.driver.get_content(path).await {
            Ok(body) => {
                let text = String::from_utf8_lossy(&body);
                let digest = text.trim().parse().map_err(|e| {
                    StorageError::io(
                        path,
                        io::Error::new(io::ErrorKind::InvalidData, format!("corrupt link: {e}")),
                    )
                })?;
                Ok(Some(digest))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn write_link(&self, path: &str, digest: &Digest) -> Result<()> {
        Ok(self
            .driver
            .put_content(path, crate::storage::layout::link_body(digest))
            .await?)
    }

    pub(crate) async fn exists(&self, path: &str) -> Result<bool> {
        match self.driver.stat_object(path).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a directory (a key prefix on an object store) has anything in it.
    pub(crate) async fn dir_exists(&self, path: &str) -> Result<bool> {
        match self.driver.stat(path).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes `path`, treating "already gone" as success.
    pub(crate) async fn remove(&self, path: &str) -> Result<()> {
        match self.driver.delete(path).await {
            Err(e) if !e.is_not_found() => Err(e.into()),
            _ => Ok(()),
        }
    }

    pub(crate) fn require_writable(&self) -> Result<()> {
        if self.options.read_only {
            Err(ContentError::ReadOnly)
        } else {
            Ok(())
        }
    }

    pub(crate) fn require_delete(&self) -> Result<()> {
        self.require_writable()?;
        if self.options.delete_enabled {
            Ok(())
        } else {
            Err(ContentError::DeleteDisabled)
        }
    }

    /// The names in a directory, none when it does not exist.
    pub(crate) async fn list_or_empty(&self, path: &str) -> Result<Vec<String>> {
        Ok(self
            .entries_or_empty(path)
            .await?
            .into_iter()
            .map(|e| e.name)
            .collect())
    }

    /// The entries of a directory, none when it does not exist.
    pub(crate) async fn entries_or_empty(&self, path: &str) -> Result<Vec<crate::storage::Entry>> {
        match self.driver.list(path).await {
            Ok(v) => Ok(v),
            Err(e) if e.is_not_found() => Ok(vec![]),
            Err(e) => Err(e.into()),
        }
    }
}

/// A body stream as the content layer consumes it.
pub trait BodyStream: futures::Stream<Item = io::Result<Bytes>> + Send + Unpin {}
impl<T: futures::Stream<Item = io::Result<Bytes>> + Send + Unpin> BodyStream for T {}

/// Applies `n`/`last` pagination to a sorted list: entries after `last`, at most `n`.
/// Returns the page and whether more entries follow. `n=0` is an empty page with no next
/// one, so a client that follows `Link` headers always stops.
pub fn paginate(sorted: Vec<String>, n: Option<usize>, last: Option<&str>) -> (Vec<String>, bool) {
    let start = last.map_or(0, |l| sorted.partition_point(|x| x.as_str() <= l));
    let rest = &sorted[start..];
    match n {
        Some(0) => (Vec::new(), false),
        Some(n) if n < rest.len() => (rest[..n].to_vec(), true),
        _ => (rest.to_vec(), false),
    }
}
