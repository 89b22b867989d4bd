//! Blobs as a repository sees them: a blob is readable in a repository only when it is
//! linked there (`_layers`), as in distribution, so one repository's blobs cannot be
//! fetched through another's name.

use super::{Content, ContentError, Result};
use crate::oci::{Digest, RepoName};
use crate::storage::{ByteStream, FileInfo, layout};

/// An inclusive byte range of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRange {
    pub start: u64,
    pub end: u64,
}

/// What a blob read asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobWant {
    /// The size only (HEAD).
    Head,
    /// The bytes: all of them, or those of a `Range: bytes=...` value.
    Body { range: Option<String> },
}

/// A blob opened for reading.
pub struct OpenedBlob {
    /// The whole blob's size.
    pub size: u64,
    /// The bytes the stream carries, when a range was asked for.
    pub range: Option<BlobRange>,
    /// The bytes, unless the read was a HEAD or is redirected.
    pub stream: Option<ByteStream>,
    /// Where the client should GET the bytes instead (a presigned object store URL).
    pub redirect: Option<String>,
}

/// How long a redirect URL stays valid, as distribution signs them.
const REDIRECT_VALID: std::time::Duration = std::time::Duration::from_secs(20 * 60);

/// Resolves a `Range: bytes=a-b` value against a blob of `size` bytes: one range, open-ended
/// (`a-`) and suffix (`-n`) forms included. `None` when it cannot be satisfied.
pub fn resolve_range(value: &str, size: u64) -> Option<BlobRange> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        (size.saturating_sub(n), size.checked_sub(1)?)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>().ok()?.min(size.saturating_sub(1))
        };
        (start, end)
    };
    (start < size && end >= start).then_some(BlobRange { start, end })
}

impl Content {
    /// A blob linked into `name`, as the HTTP API reads it.
    pub async fn read_blob(
        &self,
        name: &RepoName,
        digest: &Digest,
        want: BlobWant,
    ) -> Result<OpenedBlob> {
        let info = self.blob_info(name, digest).await?;
        let size = info.size;
        // A client asking whether an older blob is there is about to rely on it (a push
        // that skips uploading it): a garbage collection sweeping now must keep it.
        if want == BlobWant::Head
            && !self.options.read_only
            && !super::gc::within(info.modified, self.options.protect_after)
            && !self.protect_blob(digest).await?
        {
            return Err(ContentError::BlobUnknown(digest.clone()));
        }
        let range = match &want {
            BlobWant::Body { range: Some(value) } => {
                let resolved = resolve_range(value, size).ok_or_else(|| {
                    ContentError::RangeNotSatisfiable {
                        range: value.clone(),
                        size,
                    }
                })?;
                Some(resolved)
            }
            _ => None,
        };
        if let BlobWant::Body { .. } = want
            && self.options.redirect
            && let Some(url) = self
                .driver
                .url_for(&layout::blob_data(digest), REDIRECT_VALID)
                .await?
        {
            return Ok(OpenedBlob {
                size,
                range,
                stream: None,
                redirect: Some(url),
            });
        }
        let stream = match want {
            BlobWant::Head => None,
            BlobWant::Body { .. } => Some(self.open_blob(digest, range).await?),
        };
        Ok(OpenedBlob {
            size,
            range,
            stream,
            redirect: None,
        })
    }

    /// Size of a blob linked into `name`.
    pub async fn blob_size(&self, name: &RepoName, digest: &Digest) -> Result<u64> {
        Ok(self.blob_info(name, digest).await?.size)
    }

    async fn blob_info(&self, name: &RepoName, digest: &Digest) -> Result<FileInfo> {
        if !self.exists(&layout::layer_link(name, digest)).await? {
            return Err(ContentError::BlobUnknown(digest.clone()));
        }
        match self.driver.stat_object(&layout::blob_data(digest)).await {
            Ok(info) => Ok(info),
            Err(e) if e.is_not_found() => Err(ContentError::BlobUnknown(digest.clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a blob's bytes (whichever repository linked them); `range` must already be
    /// checked against its size.
    pub(crate) async fn open_blob(
        &self,
        digest: &Digest,
        range: Option<BlobRange>,
    ) -> Result<ByteStream> {
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

    /// Links a blob whose bytes are stored (fetched for another repository) into `name`;
    /// false when its bytes are not stored.
    pub(crate) async fn link_stored_blob(&self, name: &RepoName, digest: &Digest) -> Result<bool> {
        if !self.blob_stored(digest).await? {
            return Ok(false);
        }
        self.write_link(&layout::layer_link(name, digest), digest)
            .await?;
        Ok(true)
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
        // Mounted to be used by a manifest next: keep it from a sweep running now.
        if !self.protect_blob(digest).await? {
            return Ok(false);
        }
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

#[cfg(test)]
mod tests {
    use super::resolve_range;

    #[test]
    fn ranges() {
        let r = |s, size| resolve_range(s, size).map(|r| (r.start, r.end));
        assert_eq!(r("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(r("bytes=90-", 100), Some((90, 99)));
        assert_eq!(r("bytes=-10", 100), Some((90, 99)));
        assert_eq!(r("bytes=95-200", 100), Some((95, 99)));
        for bad in [
            "bytes=100-",
            "bytes=5-1",
            "bytes=a-b",
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=-0",
        ] {
            assert_eq!(r(bad, 100), None, "{bad}");
        }
        assert_eq!(r("bytes=0-0", 0), None);
    }
}
