//! In-memory driver (`storage.inmemory`): for tests and throwaway registries. Directories
//! are implied by the keys below them, as in an object store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::{
    ByteStream, Driver, Entry, FileInfo, FileWriter, Result, Resume, StorageError, check_path,
};

#[derive(Debug, Clone, Default)]
pub struct MemoryDriver {
    objects: Arc<Mutex<BTreeMap<String, (Bytes, SystemTime)>>>,
}

impl MemoryDriver {
    pub fn new() -> MemoryDriver {
        MemoryDriver::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, (Bytes, SystemTime)>> {
        self.objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn dir_prefix(path: &str) -> String {
        if path.ends_with('/') {
            path.to_owned()
        } else {
            format!("{path}/")
        }
    }
}

#[async_trait]
impl Driver for MemoryDriver {
    fn name(&self) -> &'static str {
        "inmemory"
    }

    async fn get_content(&self, path: &str) -> Result<Bytes> {
        check_path(path)?;
        self.lock()
            .get(path)
            .map(|(b, _)| b.clone())
            .ok_or_else(|| StorageError::NotFound(path.to_owned()))
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<()> {
        check_path(path)?;
        self.lock()
            .insert(path.to_owned(), (content, SystemTime::now()));
        Ok(())
    }

    async fn reader(&self, path: &str, offset: u64, len: Option<u64>) -> Result<ByteStream> {
        let data = self.get_content(path).await?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let end = len.map_or(data.len(), |l| {
            start
                .saturating_add(usize::try_from(l).unwrap_or(usize::MAX))
                .min(data.len())
        });
        Ok(futures::stream::once(async move { Ok(data.slice(start..end)) }).boxed())
    }

    async fn writer(&self, path: &str, resume: Option<&Resume>) -> Result<Box<dyn FileWriter>> {
        check_path(path)?;
        let existing = self
            .lock()
            .get(path)
            .map(|(b, _)| b.clone())
            .unwrap_or_default();
        let keep = resume.map_or(0, |r| r.size);
        let kept = usize::try_from(keep)
            .ok()
            .and_then(|keep| existing.get(..keep))
            .ok_or_else(|| StorageError::Io {
                path: path.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} bytes where {keep} were closed", existing.len()),
                ),
            })?;
        let mut buf = BytesMut::new();
        buf.extend_from_slice(kept);
        Ok(Box::new(MemoryWriter {
            driver: self.clone(),
            path: path.to_owned(),
            buf,
        }))
    }

    async fn stat(&self, path: &str) -> Result<FileInfo> {
        check_path(path)?;
        let objects = self.lock();
        if let Some((b, modified)) = objects.get(path) {
            return Ok(FileInfo {
                size: b.len() as u64,
                modified: *modified,
                is_dir: false,
            });
        }
        let prefix = Self::dir_prefix(path);
        match objects.range(prefix.clone()..).next() {
            Some((k, (_, modified))) if k.starts_with(&prefix) => Ok(FileInfo {
                size: 0,
                modified: *modified,
                is_dir: true,
            }),
            _ => Err(StorageError::NotFound(path.to_owned())),
        }
    }

    async fn list(&self, path: &str) -> Result<Vec<Entry>> {
        check_path(path)?;
        let prefix = Self::dir_prefix(path);
        let objects = self.lock();
        let mut entries: BTreeMap<&str, bool> = BTreeMap::new();
        for (key, _) in objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
        {
            let rest = &key[prefix.len()..];
            let (name, is_dir) = rest
                .split_once('/')
                .map_or((rest, false), |(n, _)| (n, true));
            *entries.entry(name).or_default() |= is_dir;
        }
        // Keys order "a-b/x" before "a/x" ('-' < '/'); the map orders names, "a" first.
        if entries.is_empty() && !objects.contains_key(path) {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        Ok(entries
            .into_iter()
            .map(|(name, is_dir)| Entry {
                name: name.to_owned(),
                is_dir,
            })
            .collect())
    }

    async fn put_if_absent(&self, path: &str, content: Bytes) -> Result<bool> {
        check_path(path)?;
        let mut objects = self.lock();
        if objects.contains_key(path) {
            return Ok(false);
        }
        objects.insert(path.to_owned(), (content, SystemTime::now()));
        Ok(true)
    }

    fn walk(&self, path: &str) -> futures::stream::BoxStream<'static, Result<(String, FileInfo)>> {
        if let Err(e) = check_path(path) {
            return futures::stream::once(async { Err(e) }).boxed();
        }
        let prefix = Self::dir_prefix(path);
        let found: Vec<Result<(String, FileInfo)>> = self
            .lock()
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, (b, modified))| {
                let info = FileInfo {
                    size: b.len() as u64,
                    modified: *modified,
                    is_dir: false,
                };
                Ok((k.clone(), info))
            })
            .collect();
        futures::stream::iter(found).boxed()
    }

    async fn rename(&self, src: &str, dst: &str) -> Result<()> {
        check_path(src)?;
        check_path(dst)?;
        let mut objects = self.lock();
        let value = objects
            .remove(src)
            .ok_or_else(|| StorageError::NotFound(src.to_owned()))?;
        objects.insert(dst.to_owned(), value);
        Ok(())
    }

    async fn delete(&self, path: &str) -> Result<()> {
        check_path(path)?;
        let prefix = Self::dir_prefix(path);
        let mut objects = self.lock();
        let removed_file = objects.remove(path).is_some();
        let before = objects.len();
        objects.retain(|k, _| !k.starts_with(&prefix));
        if removed_file || objects.len() != before {
            Ok(())
        } else {
            Err(StorageError::NotFound(path.to_owned()))
        }
    }
}

struct MemoryWriter {
    driver: MemoryDriver,
    path: String,
    buf: BytesMut,
}

#[async_trait]
impl FileWriter for MemoryWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.buf.extend_from_slice(&data);
        Ok(())
    }

    fn size(&self) -> u64 {
        self.buf.len() as u64
    }

    async fn cancel(self: Box<Self>) -> Result<()> {
        Ok(())
    }

    async fn flush(&mut self) -> Result<u64> {
        let now = SystemTime::now();
        let content = Bytes::copy_from_slice(&self.buf);
        self.driver.lock().insert(self.path.clone(), (content, now));
        Ok(self.buf.len() as u64)
    }

    async fn close(self: Box<Self>) -> Result<Resume> {
        let size = self.buf.len() as u64;
        self.commit().await?;
        Ok(Resume { size, token: None })
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        let MemoryWriter { driver, path, buf } = *self;
        driver
            .lock()
            .insert(path, (buf.freeze(), SystemTime::now()));
        Ok(())
    }
}
