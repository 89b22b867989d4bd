//! Upload sessions: monolithic, chunked, streamed and resumable blob uploads. Bytes are
//! hashed while they stream to `_uploads/<id>/data`; on completion the digest is checked
//! and the file is renamed into place, so a blob is never visible under a digest its
//! bytes do not have. Hash state is kept in memory per session and rebuilt from the
//! data file after a restart, so any upload can be resumed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::StreamExt;

use super::{BodyStream, Content, ContentError, Result};
use crate::oci::{Algorithm, Digest, Hasher, RepoName};
use crate::storage::layout;

/// The hash of an upload's first `offset` bytes.
#[derive(Clone)]
struct HashState {
    hasher: Hasher,
    offset: u64,
}

type SessionSlot = Arc<tokio::sync::Mutex<Option<HashState>>>;

/// Where a chunk goes, from its `Content-Range`: the offset of its first byte and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    pub start: u64,
    pub len: u64,
}

/// In-memory per-session state; one lock per session serialises its requests.
#[derive(Default)]
pub struct UploadSessions {
    sessions: Mutex<HashMap<String, SessionSlot>>,
}

impl UploadSessions {
    fn slot(&self, id: &str) -> SessionSlot {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_owned()).or_default().clone()
    }

    fn forget(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

impl Content {
    /// Starts a session and returns its id.
    pub async fn start_upload(&self, name: &RepoName) -> Result<String> {
        self.require_writable()?;
        let id = uuid::Uuid::new_v4().to_string();
        let started = rfc3339(SystemTime::now());
        self.driver
            .put_content(&layout::upload_started_at(name, &id), started.into())
            .await?;
        Ok(id)
    }

    /// Bytes received so far by a session.
    pub async fn upload_offset(&self, name: &RepoName, id: &str) -> Result<u64> {
        if !self.exists(&layout::upload_started_at(name, id)).await? {
            return Err(ContentError::UploadUnknown(id.to_owned()));
        }
        match self.driver.stat(&layout::upload_data(name, id)).await {
            Ok(info) => Ok(info.size),
            Err(e) if e.is_not_found() => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Appends a chunk. Its `Content-Range`, if given, must start at the current offset and
    /// match the body's length; a body of another length is refused with nothing kept.
    /// Returns the new offset. Bytes received before a broken body are kept, so the client
    /// can ask for the offset and resume.
    pub async fn append_upload(
        &self,
        name: &RepoName,
        id: &str,
        range: Option<ChunkRange>,
        body: impl BodyStream,
    ) -> Result<u64> {
        self.require_writable()?;
        let slot = self.uploads.slot(id);
        let mut state = slot.lock().await;
        self.append_locked(&mut state, name, id, range, body).await
    }

    async fn append_locked(
        &self,
        state: &mut Option<HashState>,
        name: &RepoName,
        id: &str,
        range: Option<ChunkRange>,
        body: impl BodyStream,
    ) -> Result<u64> {
        let offset = self.upload_offset(name, id).await?;
        if let Some(range) = range
            && range.start != offset
        {
            return Err(ContentError::ChunkOutOfOrder {
                given: range.start,
                expected: offset,
            });
        }
        let hash = match state.take() {
            Some(s) if s.offset == offset => s,
            _ => self.rehash(name, id, Algorithm::Sha256).await?,
        };
        let limit = range.map(|r| r.len);
        let (hash, result) = self.write_chunk(name, id, hash, limit, body).await;
        *state = hash;
        result
    }

    /// Writes a chunk; with a `declared` length, a body that turns out longer or shorter is
    /// discarded and the session keeps its previous size and hash.
    async fn write_chunk(
        &self,
        name: &RepoName,
        id: &str,
        mut hash: HashState,
        declared: Option<u64>,
        mut body: impl BodyStream,
    ) -> (Option<HashState>, Result<u64>) {
        let before = declared.map(|_| hash.clone());
        let mut writer = match self.driver.writer(&layout::upload_data(name, id)).await {
            Ok(w) => w,
            Err(e) => return (None, Err(e.into())),
        };
        let mut failure = None;
        let mut received = 0u64;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => {
                    received += bytes.len() as u64;
                    if let (Some(declared), Some(before)) = (declared, &before)
                        && received > declared
                    {
                        return discard_chunk(writer, before.clone(), declared, received).await;
                    }
                    hash.hasher.update(&bytes);
                    hash.offset += bytes.len() as u64;
                    if let Err(e) = writer.write(bytes).await {
                        // A full disk (or any write error) keeps none of this chunk, so the
                        // space is given back; the next request re-reads the hash from disk.
                        if let Err(cancel) = writer.cancel().await {
                            tracing::warn!(upload = %id, error = %cancel, "cannot discard a failed chunk");
                        }
                        return (None, Err(e.into()));
                    }
                }
                Err(e) => {
                    failure = Some(ContentError::Body(e));
                    break;
                }
            }
        }
        if let (None, Some(declared), Some(before)) = (&failure, declared, before)
            && received != declared
        {
            return discard_chunk(writer, before, declared, received).await;
        }
        // Persist what was received even when the body broke, so the offset is resumable.
        if let Err(e) = writer.commit().await {
            return (None, Err(e.into()));
        }
        match failure {
            Some(e) => (Some(hash), Err(e)),
            None => {
                let offset = hash.offset;
                (Some(hash), Ok(offset))
            }
        }
    }

    async fn rehash(&self, name: &RepoName, id: &str, algorithm: Algorithm) -> Result<HashState> {
        let mut hasher = algorithm.hasher();
        let mut offset = 0;
        let data = layout::upload_data(name, id);
        match self.driver.reader(&data, 0, None).await {
            Ok(mut stream) => {
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| crate::storage::StorageError::io(&data, e))?;
                    hasher.update(&chunk);
                    offset += chunk.len() as u64;
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(HashState { hasher, offset })
    }

    /// Stores a whole blob in one request (`POST ?digest=`). The client never learns the
    /// session's id, so on any failure the session is removed at once.
    pub async fn put_blob(
        &self,
        name: &RepoName,
        digest: &Digest,
        body: impl BodyStream,
    ) -> Result<()> {
        let id = self.start_upload(name).await?;
        let result = self.complete_upload(name, &id, digest, None, body).await;
        if result.is_err()
            && let Err(e) = self.discard_upload(name, &id).await
        {
            tracing::warn!(upload = %id, error = %e, "cannot remove a failed upload");
        }
        result
    }

    /// Appends the final chunk (at `range`, if given), verifies `digest` and moves the blob
    /// into place.
    /// On a digest mismatch the session is discarded and nothing is stored.
    pub async fn complete_upload(
        &self,
        name: &RepoName,
        id: &str,
        digest: &Digest,
        range: Option<ChunkRange>,
        body: impl BodyStream,
    ) -> Result<()> {
        self.require_writable()?;
        let slot = self.uploads.slot(id);
        let mut state = slot.lock().await;
        let offset = self
            .append_locked(&mut state, name, id, range, body)
            .await?;
        let hash = match state.take() {
            Some(s) if s.offset == offset && s.hasher.algorithm() == digest.algorithm() => s,
            _ => self.rehash(name, id, digest.algorithm()).await?,
        };
        self.commit_upload(name, id, digest, hash.hasher.finish())
            .await
    }

    /// Moves a session's bytes into place as blob `expected`, linked into `name`, if they
    /// hashed to it (`actual`); otherwise discards the session. Every blob, pushed or fetched
    /// by the pull-through cache, is committed here.
    pub(crate) async fn commit_upload(
        &self,
        name: &RepoName,
        id: &str,
        expected: &Digest,
        actual: Digest,
    ) -> Result<()> {
        if &actual != expected {
            self.discard_upload(name, id).await?;
            return Err(ContentError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        self.driver
            .rename(&layout::upload_data(name, id), &layout::blob_data(expected))
            .await?;
        self.write_link(&layout::layer_link(name, expected), expected)
            .await?;
        self.discard_upload(name, id).await
    }

    /// A new session and a writer to its data, for a writer that hashes by itself (the
    /// pull-through cache); finish with [`Content::commit_upload`].
    pub(crate) async fn open_upload(
        &self,
        name: &RepoName,
    ) -> Result<(String, Box<dyn crate::storage::FileWriter>)> {
        let id = self.start_upload(name).await?;
        let writer = self.driver.writer(&layout::upload_data(name, &id)).await?;
        Ok((id, writer))
    }

    /// Reads `len` bytes of a session's data from `offset`, while it is being written.
    pub(crate) async fn read_upload(
        &self,
        name: &RepoName,
        id: &str,
        offset: u64,
        len: u64,
    ) -> Result<crate::storage::ByteStream> {
        Ok(self
            .driver
            .reader(&layout::upload_data(name, id), offset, Some(len))
            .await?)
    }

    /// Cancels a session and deletes what it received.
    pub async fn cancel_upload(&self, name: &RepoName, id: &str) -> Result<()> {
        self.upload_offset(name, id).await?;
        self.discard_upload(name, id).await
    }

    pub(crate) async fn discard_upload(&self, name: &RepoName, id: &str) -> Result<()> {
        self.uploads.forget(id);
        self.remove(&layout::upload_dir(name, id)).await
    }
}

/// Drops a chunk whose body did not match its `Content-Range`: the session keeps `before`.
async fn discard_chunk(
    writer: Box<dyn crate::storage::FileWriter>,
    before: HashState,
    declared: u64,
    received: u64,
) -> (Option<HashState>, Result<u64>) {
    let offset = before.offset;
    match writer.cancel().await {
        Ok(()) => (
            Some(before),
            Err(ContentError::ChunkLength {
                declared,
                received,
                offset,
            }),
        ),
        Err(e) => (None, Err(e.into())),
    }
}

/// Formats a time as RFC 3339 in UTC, as distribution writes `startedat`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_251_199); // 2024-02-29T23:59:59Z
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59Z");
    }
}
