//! Blobs as a repository sees them: a blob is readable in a repository only when it is
//! linked there (`_layers`), as in distribution, so one repository's blobs cannot be
//! fetched through another's name.

use super::{Content, ContentError, Result};
use crate::oci::{Digest, RepoName};
use crate::storage::{ByteStream, layout};

/// An inclusive byte range of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRange {
    pub start: u64,
    pub end: u64,
}

/// An open blob: its total size and a stream of the requested bytes.
pub struct BlobReader {
    pub size: u64,
    pub stream: ByteStream,
}

impl Content {
    /// Size of a blob linked into `name`.
    pub async fn blob_size(&self, name: &RepoName, digest: &Digest) -> Result<u64> {
        if !self.exists(&layout::layer_link(name, digest)).await? {
            return Err(ContentError::BlobUnknown(digest.clone()));
        }
        match self.driver.stat(&layout::blob_data(digest)).await {
            Ok(info) => Ok(info.size),
            Err(e) if e.is_not_found() => Err(ContentError::BlobUnknown(digest.clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a blob for reading; `range` must already be checked against its size.
    pub async fn open_blob(&self, digest: &Digest, range: Option<BlobRange>) -> Result<ByteStream> {
        let (offset, len) = range.map_or((0, None), |r| (r.start, Some(r.end - r.start + 1)));
        match self
            .driver
            .reader(&layout::blob_data(digest), offset, len)
            .await
        {
            Err(e) if e.is_not_found() => Err(ContentError::BlobUnknown(digest.clone())),
            other => Ok(other?),
        }
    }

    /// True if the blob's bytes are stored, whichever repository linked them.
    pub(crate) async fn blob_stored(&self, digest: &Digest) -> Result<bool> {
        self.exists(&layout::blob_data(digest)).await
    }

    /// Links an existing blob of repository `from` into `name` (cross-repository mount).
    /// Returns false, changing nothing, when `from` does not have the blob.
    pub async fn mount_blob(
        &self,
        name: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> Result<bool> {
        self.require_writable()?;
        if !self.exists(&layout::layer_link(from, digest)).await?
            || !self.blob_stored(digest).await?
        {
            return Ok(false);
        }
        self.write_link(&layout::layer_link(name, digest), digest)
            .await?;
        Ok(true)
    }

    /// Unlinks a blob from a repository. The bytes stay until garbage collection.
    pub async fn delete_blob(&self, name: &RepoName, digest: &Digest) -> Result<()> {
        self.require_delete()?;
        let link = layout::layer_link(name, digest);
        if !self.exists(&link).await? {
            return Err(ContentError::BlobUnknown(digest.clone()));
        }
        let dir = link.strip_suffix("/link").unwrap_or(&link);
        self.remove(dir).await
    }
}
