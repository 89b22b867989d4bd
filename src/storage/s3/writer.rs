//! Appendable objects on S3. An object being written is a multipart upload at its key, which
//! no one can read until it completes, and whose parts (all but the last) must be at least
//! 5 MiB. So a writer:
//! - cuts what it is given into parts of `chunksize` and uploads a few at once;
//! - on `close`, uploads what is left as a part if it is big enough, or else stores it as a
//!   small "tail" object, and returns a token naming the upload, its parts' ETags and the
//!   tail: the next writer, in any process, reads the tail back and goes on;
//! - on `commit`, uploads the rest as the last part and completes the upload (an object that
//!   never reached one part is a single PUT).
//!
//! The driver's own objects for key `K` live under `K.dockyard-upload/`: the tails and a
//! `multipart` marker holding the upload's id, through which deleting the tree aborts an
//! upload nobody finished (an upload a crashed writer started and never recorded is left to
//! the store's expiry of incomplete uploads: MinIO's default, or an AWS lifecycle rule). Nothing of a writer that did not close or commit is referenced by a token.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    Attributes, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload,
};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::error;
use crate::storage::{FileWriter, Result, Resume, StorageError};

/// S3's smallest part, except the last.
pub(crate) const MIN_PART: usize = 5 << 20;
/// Parts uploaded at once by one writer.
const IN_FLIGHT: usize = 4;
const MARKER: &str = "multipart";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Part {
    etag: String,
    size: u64,
}

/// What a [`Resume`] token holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Token {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upload: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parts: Vec<Part>,
    /// The name of the tail object under the sidecar prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tail: Option<String>,
}

pub(crate) fn multipart_options(attributes: &Attributes) -> PutMultipartOptions {
    PutMultipartOptions {
        attributes: attributes.clone(),
        ..Default::default()
    }
}

/// Whether `key` is an upload marker a writer left.
pub(crate) fn is_marker(key: &Path) -> bool {
    key.as_ref()
        .rsplit_once('/')
        .is_some_and(|(dir, name)| name == MARKER && dir.ends_with(super::SIDECAR))
}

/// Aborts the upload a marker names; failures are logged (the store's own expiry of
/// incomplete uploads is the backstop).
pub(crate) async fn abort_marked(store: &AmazonS3, marker: &Path) {
    let Some(key) = marker
        .as_ref()
        .rsplit_once('/')
        .and_then(|(dir, _)| dir.strip_suffix(super::SIDECAR))
    else {
        return;
    };
    let id = match store.get(marker).await {
        Ok(got) => got.bytes().await.ok(),
        Err(_) => None,
    };
    let Some(id) = id.and_then(|b| String::from_utf8(b.to_vec()).ok()) else {
        return;
    };
    if let Err(e) = store.abort_multipart(&Path::from(key), &id).await {
        tracing::warn!(key, error = %e, "cannot abort an unfinished multipart upload");
    }
}

pub(crate) struct S3Writer {
    store: Arc<AmazonS3>,
    key: Path,
    sidecar: Path,
    /// The driver path, for errors.
    path: String,
    part_size: usize,
    attributes: Attributes,
    upload: Option<String>,
    /// Whether this writer started `upload` (cancel then aborts it).
    created: bool,
    parts: Vec<Part>,
    in_flight: VecDeque<(u64, JoinHandle<object_store::Result<PartId>>)>,
    buffer: Vec<Bytes>,
    buffered: usize,
    size: u64,
}

impl S3Writer {
    pub(crate) async fn open(
        store: Arc<AmazonS3>,
        key: Path,
        sidecar: Path,
        path: String,
        part_size: usize,
        attributes: Attributes,
        resume: Option<&Resume>,
    ) -> Result<S3Writer> {
        let (token, size) = match resume {
            None => (Token::default(), 0),
            Some(r) => {
                let token: Token = match &r.token {
                    Some(t) => serde_json::from_str(t).map_err(|e| invalid(&path, e))?,
                    None if r.size == 0 => Token::default(),
                    None => return Err(invalid(&path, "no S3 upload recorded for its bytes")),
                };
                (token, r.size)
            }
        };
        let mut w = S3Writer {
            store,
            key,
            sidecar,
            path,
            part_size,
            attributes,
            upload: token.upload,
            created: false,
            parts: token.parts,
            in_flight: VecDeque::new(),
            buffer: Vec::new(),
            buffered: 0,
            size,
        };
        if let Some(tail) = token.tail {
            let got = w.store.get(&w.sidecar.clone().join(tail)).await;
            let bytes = match got {
                Ok(got) => got.bytes().await.map_err(|e| error(&w.path, e))?,
                Err(e) => return Err(error(&w.path, e)),
            };
            w.buffered = bytes.len();
            w.buffer.push(bytes);
        }
        let parts: u64 = w.parts.iter().map(|p| p.size).sum();
        if parts + w.buffered as u64 != size {
            return Err(invalid(
                &w.path,
                "its recorded parts do not add up to its size",
            ));
        }
        Ok(w)
    }

    async fn ensure_upload(&mut self) -> Result<String> {
        if let Some(id) = &self.upload {
            return Ok(id.clone());
        }
        let id = self
            .store
            .create_multipart_opts(&self.key, multipart_options(&self.attributes))
            .await
            .map_err(|e| error(&self.path, e))?;
        let marker = self.sidecar.clone().join(MARKER);
        self.store
            .put(&marker, PutPayload::from(id.clone()))
            .await
            .map_err(|e| error(&self.path, e))?;
        self.upload = Some(id.clone());
        self.created = true;
        Ok(id)
    }

    /// Takes the first `len` buffered bytes.
    fn take(&mut self, len: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut want = len;
        while want > 0 {
            let Some(front) = self.buffer.first_mut() else {
                break;
            };
            if front.len() <= want {
                want -= front.len();
                out.push(self.buffer.remove(0));
            } else {
                out.push(front.split_to(want));
                want = 0;
            }
        }
        self.buffered -= len - want;
        out
    }

    /// Uploads `len` buffered bytes as the next part, waiting first if enough are in flight.
    async fn send_part(&mut self, len: usize) -> Result<()> {
        let id = self.ensure_upload().await?;
        while self.in_flight.len() >= IN_FLIGHT {
            self.finish_oldest().await?;
        }
        let chunks = self.take(len);
        let index = self.parts.len() + self.in_flight.len();
        let (store, key) = (self.store.clone(), self.key.clone());
        let payload = PutPayload::from_iter(chunks);
        let handle = tokio::spawn(async move { store.put_part(&key, &id, index, payload).await });
        self.in_flight.push_back((len as u64, handle));
        Ok(())
    }

    async fn finish_oldest(&mut self) -> Result<()> {
        let Some((size, handle)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let part = handle
            .await
            .map_err(|e| StorageError::io(&self.path, std::io::Error::other(e)))?
            .map_err(|e| error(&self.path, e))?;
        self.parts.push(Part {
            etag: part.content_id,
            size,
        });
        Ok(())
    }

    async fn finish_all(&mut self) -> Result<()> {
        while !self.in_flight.is_empty() {
            self.finish_oldest().await?;
        }
        Ok(())
    }

    /// Removes the tails and the marker (after the upload completed or was aborted).
    async fn remove_sidecar(&self) {
        let listed: object_store::Result<Vec<Path>> = self
            .store
            .list(Some(&self.sidecar))
            .map_ok(|m| m.location)
            .try_collect()
            .await;
        for key in listed.unwrap_or_default() {
            if let Err(e) = self.store.delete(&key).await {
                tracing::debug!(key = %key, error = %e, "cannot remove an upload's leftover");
            }
        }
    }

    fn abort_in_flight(&mut self) {
        for (_, handle) in self.in_flight.drain(..) {
            handle.abort();
        }
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        // A writer dropped without close or commit leaves nothing a token refers to.
        self.abort_in_flight();
    }
}

#[async_trait]
impl FileWriter for S3Writer {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.size += data.len() as u64;
        self.buffered += data.len();
        self.buffer.push(data);
        while self.buffered >= self.part_size {
            self.send_part(self.part_size).await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn flush(&mut self) -> Result<u64> {
        // Nothing of a multipart upload is readable before it completes.
        Ok(0)
    }

    async fn close(mut self: Box<Self>) -> Result<Resume> {
        if self.buffered >= MIN_PART {
            self.send_part(self.buffered).await?;
        }
        self.finish_all().await?;
        let tail = if self.buffered > 0 {
            let name = format!("tail-{}", uuid::Uuid::new_v4());
            let chunks = self.take(self.buffered);
            self.store
                .put(
                    &self.sidecar.clone().join(name.as_str()),
                    PutPayload::from_iter(chunks),
                )
                .await
                .map_err(|e| error(&self.path, e))?;
            Some(name)
        } else {
            None
        };
        let token = Token {
            upload: self.upload.clone(),
            parts: std::mem::take(&mut self.parts),
            tail,
        };
        Ok(Resume {
            size: self.size,
            token: Some(serde_json::to_string(&token).expect("a token serializes")),
        })
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        match self.upload.clone() {
            None => {
                let chunks = self.take(self.buffered);
                let options = PutOptions {
                    attributes: self.attributes.clone(),
                    ..Default::default()
                };
                self.store
                    .put_opts(&self.key, PutPayload::from_iter(chunks), options)
                    .await
                    .map_err(|e| error(&self.path, e))?;
            }
            Some(id) => {
                if self.buffered > 0 {
                    self.send_part(self.buffered).await?;
                }
                self.finish_all().await?;
                let parts = self
                    .parts
                    .iter()
                    .map(|p| PartId {
                        content_id: p.etag.clone(),
                    })
                    .collect();
                self.store
                    .complete_multipart(&self.key, &id, parts)
                    .await
                    .map_err(|e| error(&self.path, e))?;
            }
        }
        self.remove_sidecar().await;
        Ok(())
    }

    async fn cancel(mut self: Box<Self>) -> Result<()> {
        self.abort_in_flight();
        if self.created
            && let Some(id) = self.upload.clone()
        {
            let aborted = self.store.abort_multipart(&self.key, &id).await;
            // Only the marker: tails belong to the resume point this writer started from.
            let _ = self.store.delete(&self.sidecar.clone().join(MARKER)).await;
            aborted.map_err(|e| error(&self.path, e))?;
        }
        Ok(())
    }
}

fn invalid(path: &str, why: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("cannot continue this upload: {why}"),
        ),
    }
}
