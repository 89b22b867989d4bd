//! Per-manifest summaries for the repository page: total compressed size (config + layers of
//! an image, the sum of its children for an index), creation time from the image config, and
//! platforms. Read from the local content only (a mirror's cache, never its upstream), and
//! kept in a cache by digest bounded by its approximate size, since a digest's content never
//! changes. An index reads at most [`CHILDREN_READ`] of its children; beyond them its
//! descriptors' sizes count, and the total is a lower bound.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};

use super::detail::{self, MAX_CONFIG_BYTES, RawDescriptor, RawManifest};
use crate::content::{Content, Result};
use crate::oci::{Digest, Reference, RepoName};

/// The cache's approximate size limit.
const CACHE_BYTES: usize = 8 * 1024 * 1024;
/// What an entry costs in the cache besides its strings.
const ENTRY_OVERHEAD: usize = 160;
/// Child manifests of an index read at once.
const CHILDREN_AT_ONCE: usize = 4;
/// Child manifests of an index read at most; the rest count with their descriptor's size.
pub(crate) const CHILDREN_READ: usize = 64;

/// What a repository page shows about a manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Compressed bytes: config and layers, or the children's totals.
    pub(crate) total: u64,
    /// The image config's `created` (for an index, its newest child's).
    pub(crate) created: Option<String>,
    /// `os/arch[/variant]`: the config's for an image, the runnable entries of an index.
    pub(crate) platforms: Vec<String>,
    /// Total sizes of an index's children that were read, by digest.
    pub(crate) children: HashMap<String, u64>,
    /// `total` counts some children by their manifest's size only: it is a lower bound.
    pub(crate) lower_bound: bool,
    /// Something was not stored here (a mirror's partial cache): not cached then.
    pub(crate) partial: bool,
}

/// A bounded cache of summaries by manifest digest.
#[derive(Default)]
pub(crate) struct Summaries {
    cache: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    by_digest: HashMap<Digest, Arc<Summary>>,
    /// Insertion order, oldest first: the first to go.
    order: VecDeque<Digest>,
    /// The approximate size of the entries.
    bytes: usize,
}

impl Summary {
    /// The total as shown: "≥ " before a lower bound.
    pub(crate) fn total_text(&self) -> String {
        let size = super::pages::human_size(self.total);
        if self.lower_bound {
            format!("≥ {size}")
        } else {
            size
        }
    }

    /// Roughly what the summary (and its digest key) take in memory.
    fn approximate_bytes(&self) -> usize {
        let strings: usize = self.platforms.iter().map(|p| p.len() + 24).sum();
        let children: usize = self.children.keys().map(|k| k.len() + 64).sum();
        ENTRY_OVERHEAD + self.created.as_ref().map_or(0, String::len) + strings + children
    }
}

impl Summaries {
    fn get(&self, digest: &Digest) -> Option<Arc<Summary>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.by_digest.get(digest).cloned()
    }

    pub(super) fn put(&self, digest: &Digest, summary: Arc<Summary>) {
        if summary.partial {
            return;
        }
        let size = summary.approximate_bytes();
        if size > CACHE_BYTES {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match cache.by_digest.insert(digest.clone(), summary) {
            Some(old) => cache.bytes -= old.approximate_bytes(),
            None => cache.order.push_back(digest.clone()),
        }
        cache.bytes += size;
        while cache.bytes > CACHE_BYTES {
            let Some(old) = cache.order.pop_front() else {
                break;
            };
            if let Some(gone) = cache.by_digest.remove(&old) {
                cache.bytes -= gone.approximate_bytes();
            }
        }
    }

    /// The cache's approximate size and entries (for tests).
    #[cfg(test)]
    pub(crate) fn footprint(&self) -> (usize, usize) {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        (cache.bytes, cache.by_digest.len())
    }

    /// The summary of manifest `digest` of `name`.
    pub(crate) async fn of(
        &self,
        content: &Content,
        name: &RepoName,
        digest: &Digest,
    ) -> Result<Arc<Summary>> {
        if let Some(hit) = self.get(digest) {
            return Ok(hit);
        }
        let m = content
            .get_manifest(name, &Reference::Digest(digest.clone()))
            .await?;
        let summary = match detail::read_manifest(&m.bytes) {
            Some(raw) if raw.manifests.is_some() => self.index(content, name, &raw).await,
            Some(raw) if raw.config.is_some() => image(content, name, &raw).await,
            _ => Summary {
                total: m.size,
                ..Summary::default()
            },
        };
        let summary = Arc::new(summary);
        self.put(digest, summary.clone());
        Ok(summary)
    }

    async fn index(&self, content: &Content, name: &RepoName, raw: &RawManifest) -> Summary {
        let children = raw.manifests.as_deref().unwrap_or_default();
        let reads: Vec<_> = children
            .iter()
            .take(CHILDREN_READ)
            .map(|c| self.child(content, name, c))
            .collect();
        let read = futures::stream::iter(reads)
            .buffered(CHILDREN_AT_ONCE)
            .collect::<Vec<_>>()
            .await;
        let mut summary = Summary {
            lower_bound: children.len() > CHILDREN_READ,
            ..Summary::default()
        };
        for (c, child) in children.iter().zip(read) {
            let (total, created) = match child {
                Some(s) => {
                    summary.partial |= s.partial;
                    (s.total, s.created.clone())
                }
                None => {
                    summary.partial = true;
                    (c.size, None)
                }
            };
            summary.total += total;
            summary.children.insert(c.digest.clone(), total);
            summary.created = summary.created.max(created);
        }
        for c in children.iter().skip(CHILDREN_READ) {
            summary.total += c.size;
        }
        summary.platforms = children
            .iter()
            .filter_map(|c| c.platform.as_ref().filter(|p| p.is_runnable()))
            .map(|p| p.text())
            .collect();
        summary
    }

    /// An index's child: an image is summarised (and cached), a nested index counts as its
    /// own size. `None` when it is not stored in this repository (whatever the cache holds
    /// from another).
    async fn child(
        &self,
        content: &Content,
        name: &RepoName,
        c: &RawDescriptor,
    ) -> Option<Arc<Summary>> {
        let digest: Digest = c.digest.parse().ok()?;
        let reference = Reference::Digest(digest.clone());
        if let Some(hit) = self.get(&digest) {
            // The cache is by digest alone: the child must be in this repository too.
            content.resolve(name, &reference).await.ok()?;
            return Some(hit);
        }
        let m = content.get_manifest(name, &reference).await.ok()?;
        let summary = match detail::read_manifest(&m.bytes) {
            Some(raw) if raw.config.is_some() => image(content, name, &raw).await,
            _ => Summary {
                total: c.size,
                ..Summary::default()
            },
        };
        let summary = Arc::new(summary);
        self.put(&digest, summary.clone());
        Some(summary)
    }
}

/// An image's summary: sizes from the manifest, time and platform from its config.
async fn image(content: &Content, name: &RepoName, raw: &RawManifest) -> Summary {
    let config = raw.config.clone().unwrap_or_default();
    let layers: u64 = raw.layers.iter().flatten().map(|l| l.size).sum();
    let mut summary = Summary {
        total: config.size + layers,
        ..Summary::default()
    };
    if detail::is_image_config(&config.media_type) {
        match read_config(content, name, &config).await {
            Some(bytes) => {
                summary.created = detail::config_created(&bytes);
                summary.platforms = detail::config_platform(&bytes).into_iter().collect();
            }
            None => summary.partial = true,
        }
    }
    summary
}

/// A (small) config blob of `name`, unless it is not stored here or too large.
pub(crate) async fn read_config(
    content: &Content,
    name: &RepoName,
    config: &RawDescriptor,
) -> Option<Bytes> {
    let digest: Digest = config.digest.parse().ok()?;
    let size = content.blob_size(name, &digest).await.ok()?;
    if size > MAX_CONFIG_BYTES {
        return None;
    }
    let stream = content.open_blob(&digest, None).await.ok()?;
    let bytes = stream
        .try_fold(BytesMut::new(), |mut acc, chunk| async move {
            acc.extend_from_slice(&chunk);
            Ok(acc)
        })
        .await
        .ok()?;
    Some(bytes.freeze())
}
