//! A bounded cache of manifest bytes by digest. Content under a digest never changes, so
//! entries need no invalidation; only whether a repository still links the digest is
//! checked on every read, in storage.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;

use crate::oci::Digest;

/// A manifest's bytes with the `mediaType` field they declare, if any.
#[derive(Clone)]
pub struct CachedManifest {
    pub bytes: Bytes,
    pub media_type: Option<String>,
}

struct Inner {
    entries: HashMap<Digest, CachedManifest>,
    order: VecDeque<Digest>,
    bytes: usize,
}

/// First-in, first-out eviction once `capacity` bytes are held.
pub struct ManifestCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl ManifestCache {
    pub fn new(capacity: usize) -> ManifestCache {
        ManifestCache {
            capacity,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
            }),
        }
    }

    pub fn get(&self, digest: &Digest) -> Option<CachedManifest> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .get(digest)
            .cloned()
    }

    pub fn insert(&self, digest: Digest, manifest: CachedManifest) {
        let size = manifest.bytes.len();
        if size > self.capacity / 4 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.entries.contains_key(&digest) {
            return;
        }
        while inner.bytes + size > self.capacity {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(evicted) = inner.entries.remove(&old) {
                inner.bytes -= evicted.bytes.len();
            }
        }
        inner.bytes += size;
        inner.order.push_back(digest.clone());
        inner.entries.insert(digest, manifest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Algorithm;

    fn entry(n: usize) -> (Digest, CachedManifest) {
        let bytes = Bytes::from(vec![n as u8; 10]);
        (
            Digest::of(Algorithm::Sha256, &bytes),
            CachedManifest {
                bytes,
                media_type: Some("t".into()),
            },
        )
    }

    #[test]
    fn evicts_oldest_past_capacity() {
        let cache = ManifestCache::new(40);
        let entries: Vec<_> = (0..5).map(entry).collect();
        for (d, m) in &entries {
            cache.insert(d.clone(), m.clone());
        }
        assert!(cache.get(&entries[0].0).is_none());
        assert!(cache.get(&entries[4].0).is_some());
        assert_eq!(cache.get(&entries[1].0).unwrap().bytes.len(), 10);
    }

    #[test]
    fn refuses_entries_too_large_to_share() {
        let cache = ManifestCache::new(16);
        let (d, m) = entry(1);
        cache.insert(d.clone(), m);
        assert!(cache.get(&d).is_none());
    }
}
