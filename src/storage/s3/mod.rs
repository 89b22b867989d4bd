//! S3 driver (`storage.s3`): keys are stored under `rootdirectory` exactly as distribution's
//! S3 driver stores them, so a bucket either one wrote is served by the other. Built on the
//! `object_store` crate; appendable objects (upload data) are multipart uploads whose parts
//! and unfinished tail are described by the [`Resume`] token (see [`writer`]), so any
//! replica continues a write another one closed.

mod options;
mod writer;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3;
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    Attribute, Attributes, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutOptions,
    PutPayload,
};

pub use options::S3Options;

use super::{
    ByteStream, Driver, Entry, FileInfo, FileWriter, Result, Resume, StorageError, check_path,
};

/// CopyObject's limit; larger objects are copied through this process.
const MAX_COPY: u64 = 5 << 30;
/// Where the driver keeps its own objects for an appendable object `K`: `K` + this suffix.
pub(crate) const SIDECAR: &str = ".dockyard-upload";

#[derive(Debug, Clone)]
pub struct S3Driver {
    store: Arc<AmazonS3>,
    /// The key prefix, without leading or trailing `/` ("" for the bucket's root).
    root: String,
    part_size: usize,
    attributes: Attributes,
    bucket: String,
}

impl S3Driver {
    pub fn new(options: &S3Options) -> Result<S3Driver, String> {
        let store = options.build()?;
        let mut attributes = Attributes::new();
        if let Some(class) = &options.storage_class {
            attributes.insert(Attribute::StorageClass, class.clone().into());
        }
        Ok(S3Driver {
            store: Arc::new(store),
            root: options.root.trim_matches('/').to_owned(),
            part_size: options.chunk_size,
            attributes,
            bucket: options.bucket.clone(),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object key of a driver path, as distribution computes it.
    fn key(&self, path: &str) -> Result<Path> {
        check_path(path)?;
        let key = format!("{}{}", self.root, path);
        Ok(Path::from(key.trim_start_matches('/')))
    }

    /// The prefix that lists the children of directory `path`.
    fn dir_prefix(&self, path: &str) -> Result<String> {
        check_path(path)?;
        let key = format!("{}{}", self.root, path.trim_end_matches('/'));
        let key = key.trim_start_matches('/');
        Ok(if key.is_empty() {
            String::new()
        } else {
            format!("{key}/")
        })
    }

    fn put_options(&self) -> PutOptions {
        PutOptions {
            attributes: self.attributes.clone(),
            ..Default::default()
        }
    }

    /// Lists one page below `prefix` with the `/` delimiter.
    async fn list_page(
        &self,
        prefix: &str,
        page_token: Option<String>,
        max_keys: Option<usize>,
    ) -> Result<object_store::list::PaginatedListResult> {
        let opts = PaginatedListOptions {
            delimiter: Some("/".into()),
            max_keys,
            page_token,
            ..Default::default()
        };
        let prefix = (!prefix.is_empty()).then_some(prefix);
        self.store
            .list_paginated(prefix, opts)
            .await
            .map_err(|e| error(prefix.unwrap_or("/"), e))
    }

    /// Copies an object too large for CopyObject through this process, part by part.
    async fn copy_streamed(&self, from: &Path, to: &Path, src: &str) -> Result<()> {
        let id = self
            .store
            .create_multipart_opts(to, writer::multipart_options(&self.attributes))
            .await
            .map_err(|e| error(src, e))?;
        let result = async {
            let mut parts = Vec::new();
            let size = self.store.head(from).await.map_err(|e| error(src, e))?.size;
            let step = (self.part_size as u64).max(64 << 20);
            let mut start = 0;
            while start < size {
                let end = (start + step).min(size);
                let bytes = self
                    .store
                    .get_range(from, start..end)
                    .await
                    .map_err(|e| error(src, e))?;
                let part = self
                    .store
                    .put_part(to, &id, parts.len(), PutPayload::from(bytes))
                    .await
                    .map_err(|e| error(src, e))?;
                parts.push(part);
                start = end;
            }
            self.store
                .complete_multipart(to, &id, parts)
                .await
                .map_err(|e| error(src, e))
        }
        .await;
        if result.is_err() {
            let _ = self.store.abort_multipart(to, &id).await;
        }
        result.map(|_| ())
    }
}

/// Maps an object store error; a missing key is [`StorageError::NotFound`].
pub(crate) fn error(path: &str, e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound(path.to_owned()),
        other => StorageError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(other),
        },
    }
}

fn modified(meta: &object_store::ObjectMeta) -> SystemTime {
    SystemTime::from(meta.last_modified)
}

#[async_trait]
impl Driver for S3Driver {
    fn name(&self) -> &'static str {
        "s3"
    }

    async fn get_content(&self, path: &str) -> Result<Bytes> {
        let key = self.key(path)?;
        let got = self.store.get(&key).await.map_err(|e| error(path, e))?;
        got.bytes().await.map_err(|e| error(path, e))
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<()> {
        let key = self.key(path)?;
        self.store
            .put_opts(&key, PutPayload::from(content), self.put_options())
            .await
            .map_err(|e| error(path, e))?;
        Ok(())
    }

    async fn reader(&self, path: &str, offset: u64, len: Option<u64>) -> Result<ByteStream> {
        let key = self.key(path)?;
        let range = match len {
            Some(0) => None,
            Some(len) => Some(GetRange::Bounded(offset..offset.saturating_add(len))),
            None if offset > 0 => Some(GetRange::Offset(offset)),
            None => None,
        };
        if len == Some(0) {
            // Existence still matters: a missing object is NotFound.
            self.store.head(&key).await.map_err(|e| error(path, e))?;
            return Ok(futures::stream::empty().boxed());
        }
        let options = GetOptions {
            range,
            ..Default::default()
        };
        match self.store.get_opts(&key, options).await {
            Ok(got) => {
                let p = path.to_owned();
                Ok(got
                    .into_stream()
                    .map_err(move |e| std::io::Error::other(error(&p, e)))
                    .boxed())
            }
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::NotFound(path.into())),
            Err(e) => {
                // A range starting at the end of the object is empty, not an error.
                match self.store.head(&key).await {
                    Ok(meta) if meta.size <= offset => Ok(futures::stream::empty().boxed()),
                    _ => Err(error(path, e)),
                }
            }
        }
    }

    async fn writer(&self, path: &str, resume: Option<&Resume>) -> Result<Box<dyn FileWriter>> {
        let key = self.key(path)?;
        let sidecar = Path::from(format!("{key}{SIDECAR}"));
        let w = writer::S3Writer::open(
            self.store.clone(),
            key,
            sidecar,
            path.to_owned(),
            self.part_size,
            self.attributes.clone(),
            resume,
        )
        .await?;
        Ok(Box::new(w))
    }

    async fn stat(&self, path: &str) -> Result<FileInfo> {
        let key = self.key(path)?;
        match self.store.head(&key).await {
            Ok(meta) => {
                return Ok(FileInfo {
                    size: meta.size,
                    modified: modified(&meta),
                    is_dir: false,
                });
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(error(path, e)),
        }
        let page = self
            .list_page(&self.dir_prefix(path)?, None, Some(1))
            .await?;
        let listed = page.result;
        if listed.objects.is_empty() && listed.common_prefixes.is_empty() {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        Ok(FileInfo {
            size: 0,
            modified: listed
                .objects
                .first()
                .map_or(SystemTime::UNIX_EPOCH, modified),
            is_dir: true,
        })
    }

    async fn stat_object(&self, path: &str) -> Result<FileInfo> {
        let key = self.key(path)?;
        let meta = self.store.head(&key).await.map_err(|e| error(path, e))?;
        Ok(FileInfo {
            size: meta.size,
            modified: modified(&meta),
            is_dir: false,
        })
    }

    async fn list(&self, path: &str) -> Result<Vec<Entry>> {
        let prefix = self.dir_prefix(path)?;
        let mut entries: std::collections::BTreeMap<String, bool> = Default::default();
        let mut token = None;
        loop {
            let page = self.list_page(&prefix, token, None).await?;
            for dir in &page.result.common_prefixes {
                if let Some(name) = dir.filename() {
                    entries.insert(name.to_owned(), true);
                }
            }
            for object in &page.result.objects {
                if let Some(name) = object.location.filename() {
                    entries.entry(name.to_owned()).or_insert(false);
                }
            }
            token = page.page_token;
            if token.is_none() {
                break;
            }
        }
        entries.retain(|name, _| !name.ends_with(SIDECAR));
        if entries.is_empty() && path != "/" {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        Ok(entries
            .into_iter()
            .map(|(name, is_dir)| Entry { name, is_dir })
            .collect())
    }

    async fn delete_objects(&self, paths: Vec<String>) -> Result<()> {
        let keys: Vec<Path> = paths.iter().map(|p| self.key(p)).collect::<Result<_>>()?;
        let stream = futures::stream::iter(keys.into_iter().map(Ok)).boxed();
        let mut deleted = self.store.delete_stream(stream);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(error(paths.first().map_or("/", |p| p), e)),
            }
        }
        Ok(())
    }

    async fn put_if_absent(&self, path: &str, content: Bytes) -> Result<bool> {
        let key = self.key(path)?;
        let options = PutOptions {
            mode: object_store::PutMode::Create,
            ..self.put_options()
        };
        match self
            .store
            .put_opts(&key, PutPayload::from(content), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(error(path, e)),
        }
    }

    fn walk(&self, path: &str) -> futures::stream::BoxStream<'static, Result<(String, FileInfo)>> {
        let prefix = match self.dir_prefix(path) {
            Ok(p) => Path::from(p.trim_end_matches('/')),
            Err(e) => return futures::stream::once(async { Err(e) }).boxed(),
        };
        // Keys back to driver paths: strip the root directory.
        let strip = if self.root.is_empty() {
            String::new()
        } else {
            format!("{}/", self.root)
        };
        let p = path.to_owned();
        self.store
            .list(Some(&prefix))
            .map(move |item| {
                let meta = item.map_err(|e| error(&p, e))?;
                let key = meta.location.as_ref();
                let rel = key.strip_prefix(strip.as_str()).unwrap_or(key);
                let info = FileInfo {
                    size: meta.size,
                    modified: modified(&meta),
                    is_dir: false,
                };
                Ok((format!("/{rel}"), info))
            })
            .boxed()
    }

    async fn rename(&self, src: &str, dst: &str) -> Result<()> {
        let (from, to) = (self.key(src)?, self.key(dst)?);
        let size = self
            .store
            .head(&from)
            .await
            .map_err(|e| error(src, e))?
            .size;
        if size > MAX_COPY {
            self.copy_streamed(&from, &to, src).await?;
        } else {
            self.store
                .copy(&from, &to)
                .await
                .map_err(|e| error(src, e))?;
        }
        self.store.delete(&from).await.map_err(|e| error(src, e))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let key = self.key(path)?;
        let prefix = Path::from(self.dir_prefix(path)?.trim_end_matches('/'));
        let mut keys: Vec<Path> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| error(path, e))?;
        // Unfinished multipart uploads in the tree are aborted through their markers.
        for marker in keys.iter().filter(|k| writer::is_marker(k)) {
            writer::abort_marked(&self.store, marker).await;
        }
        match self.store.head(&key).await {
            Ok(_) => keys.push(key),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(error(path, e)),
        }
        if keys.is_empty() {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        let stream = futures::stream::iter(keys.into_iter().map(Ok)).boxed();
        let mut deleted = self.store.delete_stream(stream);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(error(path, e)),
            }
        }
        Ok(())
    }

    async fn url_for(&self, path: &str, expires: Duration) -> Result<Option<String>> {
        let key = self.key(path)?;
        self.store
            .signed_url(http::Method::GET, &key, expires)
            .await
            .map(|u| Some(u.to_string()))
            .map_err(|e| error(path, e))
    }

    fn follows_writes(&self) -> bool {
        false
    }

    fn commits_atomically(&self) -> bool {
        true
    }
}
