//! Upload sessions: monolithic, chunked, streamed and resumable blob uploads. Bytes are
//! hashed while they stream to `_uploads/<id>/data`; after each request the session's state
//! (offset, hash state, and where the driver resumes its writer) is saved in
//! `_uploads/<id>/state`, so any replica on the same storage continues any session and
//! nothing is re-read. On completion the digest is checked and the data is moved into
//! place, so a blob is never visible under a digest its bytes do not have.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{BodyStream, Content, ContentError, Result};
use crate::oci::{Algorithm, Digest, Hasher, RepoName};
use crate::storage::{FileWriter, Resume, StorageError, layout};

/// Where a chunk goes, from its `Content-Range`: the offset of its first byte and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    pub start: u64,
    pub len: u64,
}

/// What a session has received, as saved after each request.
#[derive(Serialize, Deserialize)]
struct SessionState {
    /// The hash of every byte received, saved by [`Hasher::save`] (hex).
    algorithm: Algorithm,
    hash: String,
    /// The data's size and the driver's resume point.
    writer: Resume,
}

/// A session's state, loaded.
struct Session {
    hasher: Hasher,
    /// `None` before the first byte: the data does not exist yet.
    writer: Option<Resume>,
}

impl Session {
    fn offset(&self) -> u64 {
        self.writer.as_ref().map_or(0, |w| w.size)
    }
}

/// One lock per session in this process serialises its requests (a client that sends two
/// chunks at once); entries go when no request holds them.
#[derive(Default)]
pub struct UploadSessions {
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl UploadSessions {
    async fn lock(&self, id: &str) -> SessionGuard<'_> {
        let slot = {
            let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(id.to_owned()).or_default().clone()
        };
        let guard = slot.clone().lock_owned().await;
        SessionGuard {
            sessions: self,
            id: id.to_owned(),
            slot,
            _guard: guard,
        }
    }
}

struct SessionGuard<'a> {
    sessions: &'a UploadSessions,
    id: String,
    slot: Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        let mut map = self
            .sessions
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // The map's, this guard's and the lock's own: nobody else waits for it.
        if Arc::strong_count(&self.slot) <= 3 {
            map.remove(&self.id);
        }
    }
}

/// How a chunk's body ended.
enum Streamed {
    /// All of it arrived, in its declared length if any.
    Whole,
    /// The connection broke; what arrived is kept so the client can resume.
    Broken(std::io::Error),
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
        Ok(self
            .load_session(name, id, Algorithm::Sha256)
            .await?
            .offset())
    }

    /// The saved state of a session; a session from before states were saved (an older
    /// Dockyard) is rebuilt from its data.
    async fn load_session(&self, name: &RepoName, id: &str, alg: Algorithm) -> Result<Session> {
        let path = layout::upload_state(name, id);
        match self.driver.get_content(&path).await {
            Ok(bytes) => {
                let state: SessionState = serde_json::from_slice(&bytes)
                    .map_err(|e| corrupt(&path, format!("unreadable upload state: {e}")))?;
                let hasher = hex::decode(&state.hash)
                    .ok()
                    .and_then(|b| Hasher::restore(state.algorithm, &b))
                    .ok_or_else(|| corrupt(&path, "unreadable hash state".into()))?;
                Ok(Session {
                    hasher,
                    writer: Some(state.writer),
                })
            }
            Err(e) if e.is_not_found() => {
                if !self.exists(&layout::upload_started_at(name, id)).await? {
                    return Err(ContentError::UploadUnknown(id.to_owned()));
                }
                self.rehash(name, id, alg).await
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn save_session(&self, name: &RepoName, id: &str, session: &Session) -> Result<()> {
        let state = SessionState {
            algorithm: session.hasher.algorithm(),
            hash: hex::encode(session.hasher.save()),
            writer: session.writer.clone().unwrap_or_default(),
        };
        let bytes = serde_json::to_vec(&state).expect("a session state serializes");
        self.driver
            .put_content(&layout::upload_state(name, id), bytes.into())
            .await?;
        Ok(())
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
        let _guard = self.uploads.lock(id).await;
        let mut session = self.load_session(name, id, Algorithm::Sha256).await?;
        let data = layout::upload_data(name, id);
        let (writer, streamed) = self
            .write_chunk(&data, id, &mut session, range, body)
            .await?;
        session.writer = Some(writer.close().await?);
        self.save_session(name, id, &session).await?;
        match streamed {
            Streamed::Whole => Ok(session.offset()),
            Streamed::Broken(e) => Err(ContentError::Body(e)),
        }
    }

    /// Streams a chunk into the session's data through a new writer, updating `session`'s
    /// hash; the caller closes or commits the writer. With a declared length, a body that
    /// turns out longer or shorter is discarded and the session is left as it was.
    async fn write_chunk(
        &self,
        data: &str,
        id: &str,
        session: &mut Session,
        range: Option<ChunkRange>,
        mut body: impl BodyStream,
    ) -> Result<(Box<dyn FileWriter>, Streamed)> {
        let offset = session.offset();
        if let Some(range) = range
            && range.start != offset
        {
            return Err(ContentError::ChunkOutOfOrder {
                given: range.start,
                expected: offset,
            });
        }
        let declared = range.map(|r| r.len);
        let mut writer = self.driver.writer(data, session.writer.as_ref()).await?;
        let mut hasher = session.hasher.clone();
        let mut received = 0u64;
        let mut streamed = Streamed::Whole;
        while let Some(chunk) = body.next().await {
            let bytes = match chunk {
                Ok(bytes) => bytes,
                Err(e) => {
                    streamed = Streamed::Broken(e);
                    break;
                }
            };
            received += bytes.len() as u64;
            if declared.is_some_and(|d| received > d) {
                break;
            }
            hasher.update(&bytes);
            if let Err(e) = writer.write(bytes).await {
                // A full disk (or any write error) keeps none of this chunk.
                cancel(writer, id).await;
                return Err(e.into());
            }
        }
        if let (Streamed::Whole, Some(declared)) = (&streamed, declared)
            && received != declared
        {
            cancel(writer, id).await;
            return Err(ContentError::ChunkLength {
                declared,
                received,
                offset,
            });
        }
        session.hasher = hasher;
        Ok((writer, streamed))
    }

    /// Rebuilds a session's state from its data (a session an older Dockyard started).
    async fn rehash(&self, name: &RepoName, id: &str, algorithm: Algorithm) -> Result<Session> {
        let mut hasher = algorithm.hasher();
        let mut offset = 0;
        let data = layout::upload_data(name, id);
        match self.driver.reader(&data, 0, None).await {
            Ok(mut stream) => {
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| StorageError::io(&data, e))?;
                    hasher.update(&chunk);
                    offset += chunk.len() as u64;
                }
            }
            Err(e) if e.is_not_found() => {
                return Ok(Session {
                    hasher,
                    writer: None,
                });
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Session {
            hasher,
            writer: Some(Resume {
                size: offset,
                token: None,
            }),
        })
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
        let _guard = self.uploads.lock(id).await;
        let mut session = self.load_session(name, id, digest.algorithm()).await?;
        // A whole blob in one request, on storage that publishes a write only when it is
        // committed: it is written at its final place, with no copy after.
        let direct = session.writer.is_none() && self.driver.commits_atomically();
        let data = if direct {
            session.hasher = digest.algorithm().hasher();
            layout::blob_data(digest)
        } else {
            layout::upload_data(name, id)
        };
        let (writer, streamed) = self
            .write_chunk(&data, id, &mut session, range, body)
            .await?;
        if direct {
            return self
                .finish_direct(name, id, digest, session, writer, streamed)
                .await;
        }
        if let Streamed::Broken(e) = streamed {
            session.writer = Some(writer.close().await?);
            self.save_session(name, id, &session).await?;
            return Err(ContentError::Body(e));
        }
        if session.hasher.algorithm() == digest.algorithm() {
            let actual = session.hasher.finish();
            if &actual != digest {
                cancel(writer, id).await;
                self.discard_upload(name, id).await?;
                return Err(ContentError::DigestMismatch {
                    expected: digest.clone(),
                    actual,
                });
            }
            writer.commit().await?;
        } else {
            // Hashed as sha256 while streaming; the data is read back once for another
            // algorithm.
            writer.commit().await?;
            let actual = self
                .rehash(name, id, digest.algorithm())
                .await?
                .hasher
                .finish();
            return self.commit_upload(name, id, digest, actual).await;
        }
        self.commit_upload(name, id, digest, digest.clone()).await
    }

    /// Completes a blob written at its final place: committed only if its bytes hash to
    /// `digest` (until then no reader sees them), then linked; the session goes either way.
    async fn finish_direct(
        &self,
        name: &RepoName,
        id: &str,
        digest: &Digest,
        session: Session,
        writer: Box<dyn FileWriter>,
        streamed: Streamed,
    ) -> Result<()> {
        let actual = session.hasher.finish();
        let failure = match streamed {
            Streamed::Broken(e) => Some(ContentError::Body(e)),
            Streamed::Whole if &actual != digest => Some(ContentError::DigestMismatch {
                expected: digest.clone(),
                actual,
            }),
            Streamed::Whole => None,
        };
        if let Some(failure) = failure {
            cancel(writer, id).await;
            self.discard_upload(name, id).await?;
            return Err(failure);
        }
        writer.commit().await?;
        self.write_link(&layout::layer_link(name, digest), digest)
            .await?;
        self.discard_upload(name, id).await
    }

    /// Moves a session's committed bytes into place as blob `expected`, linked into `name`,
    /// if they hashed to it (`actual`); otherwise discards the session. Every blob, pushed
    /// or fetched by the pull-through cache, is committed here.
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
    /// pull-through cache); commit the writer, then [`Content::commit_upload`].
    pub(crate) async fn open_upload(
        &self,
        name: &RepoName,
    ) -> Result<(String, Box<dyn FileWriter>)> {
        let id = self.start_upload(name).await?;
        let writer = self
            .driver
            .writer(&layout::upload_data(name, &id), None)
            .await?;
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
        let _guard = self.uploads.lock(id).await;
        if !self.exists(&layout::upload_started_at(name, id)).await? {
            return Err(ContentError::UploadUnknown(id.to_owned()));
        }
        self.discard_upload(name, id).await
    }

    pub(crate) async fn discard_upload(&self, name: &RepoName, id: &str) -> Result<()> {
        self.remove(&layout::upload_dir(name, id)).await
    }
}

/// Discards what a writer wrote; a failure to is only logged (the session's state still
/// says where its data ends).
async fn cancel(writer: Box<dyn FileWriter>, id: &str) {
    if let Err(e) = writer.cancel().await {
        tracing::warn!(upload = %id, error = %e, "cannot discard a refused chunk");
    }
}

fn corrupt(path: &str, message: String) -> ContentError {
    ContentError::Storage(StorageError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, message),
    })
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
