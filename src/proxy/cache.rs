//! What the mirror has cached, how big it is and when it was last used, and the choice of
//! what to evict: content unused for `proxy.ttl`, then, while the cache is larger than
//! `proxy.maxsize`, the least recently used. A blob counts as used when a cached manifest
//! that references it was, so an image is never evicted from under its manifest, and content
//! being fetched or served is never evicted. The index is rebuilt from storage at startup
//! (last use = when it was cached), and kept in memory. [`plan`] is pure.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::oci::{Digest, RepoName};

/// One cached blob or manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub size: u64,
    pub last_used: SystemTime,
    /// Repositories that link it.
    pub repos: BTreeSet<RepoName>,
    /// For a manifest: the blobs and child manifests it references.
    pub refs: Option<Vec<Digest>>,
}

/// Something to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    pub digest: Digest,
    pub repos: Vec<RepoName>,
    pub manifest: bool,
    pub size: u64,
}

/// What a group of cached content adds up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub last_used: SystemTime,
}

#[derive(Default)]
pub struct CacheIndex {
    entries: Mutex<HashMap<Digest, Entry>>,
    /// The sum of the entries' sizes, kept as they change.
    total: std::sync::atomic::AtomicU64,
}

impl CacheIndex {
    /// Records that `digest` (of `size` bytes, linked in `repo`) was used now; `refs` marks
    /// a manifest and what it references.
    pub fn touch(&self, digest: &Digest, repo: &RepoName, size: u64, refs: Option<Vec<Digest>>) {
        self.record(digest, repo, size, refs, SystemTime::now());
    }

    /// As [`CacheIndex::touch`], at a given time (the index rebuilt from storage).
    pub fn record(
        &self,
        digest: &Digest,
        repo: &RepoName,
        size: u64,
        refs: Option<Vec<Digest>>,
        at: SystemTime,
    ) {
        use std::sync::atomic::Ordering;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.entry(digest.clone()).or_insert_with(|| {
            self.total.fetch_add(size, Ordering::Relaxed);
            Entry {
                size,
                last_used: at,
                repos: BTreeSet::new(),
                refs: None,
            }
        });
        if entry.size != size {
            self.total.fetch_add(size, Ordering::Relaxed);
            self.total.fetch_sub(entry.size, Ordering::Relaxed);
        }
        entry.size = size;
        entry.last_used = entry.last_used.max(at);
        entry.repos.insert(repo.clone());
        if refs.is_some() {
            entry.refs = refs;
        }
    }

    /// Whether `digest` is known as a manifest with its references.
    pub fn has_refs(&self, digest: &Digest) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(digest).is_some_and(|e| e.refs.is_some())
    }

    pub fn remove(&self, digest: &Digest) {
        let removed = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(digest);
        if let Some(entry) = removed {
            self.total
                .fetch_sub(entry.size, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Bytes cached.
    pub fn size(&self) -> u64 {
        self.total.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes and last use of what is cached, grouped by `group` of the repositories that
    /// link each entry (an entry counts once per group; `None` leaves a repository out).
    pub fn usage<K: std::hash::Hash + Eq>(
        &self,
        group: impl Fn(&RepoName) -> Option<K>,
    ) -> HashMap<K, Usage> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: HashMap<K, Usage> = HashMap::new();
        for entry in entries.values() {
            let groups: HashSet<K> = entry.repos.iter().filter_map(&group).collect();
            for key in groups {
                let usage = out.entry(key).or_insert(Usage {
                    bytes: 0,
                    last_used: entry.last_used,
                });
                usage.bytes += entry.size;
                usage.last_used = usage.last_used.max(entry.last_used);
            }
        }
        out
    }

    /// What to evict now.
    pub fn plan(
        &self,
        now: SystemTime,
        ttl: Option<Duration>,
        max_size: Option<u64>,
        busy: &HashSet<Digest>,
    ) -> Vec<Eviction> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        plan(&entries, now, ttl, max_size, busy)
    }
}

/// Chooses evictions: expired content first, then least recently used past `max_size`.
pub fn plan(
    entries: &HashMap<Digest, Entry>,
    now: SystemTime,
    ttl: Option<Duration>,
    max_size: Option<u64>,
    busy: &HashSet<Digest>,
) -> Vec<Eviction> {
    // A blob is as recent as the most recent manifest that references it.
    let mut effective: HashMap<&Digest, SystemTime> =
        entries.iter().map(|(d, e)| (d, e.last_used)).collect();
    for entry in entries.values() {
        for r in entry.refs.iter().flatten() {
            if let Some(t) = effective.get_mut(r) {
                *t = (*t).max(entry.last_used);
            }
        }
    }
    let mut order: Vec<(&Digest, SystemTime)> = effective.into_iter().collect();
    order.sort_by_key(|(d, t)| (*t, (*d).clone()));
    let mut total: u64 = entries.values().map(|e| e.size).sum();
    let cutoff = ttl.and_then(|ttl| now.checked_sub(ttl));
    let mut out = Vec::new();
    for (digest, used) in order {
        let expired = cutoff.is_some_and(|c| used < c);
        let oversize = max_size.is_some_and(|max| total > max);
        if !expired && !oversize {
            // Sorted by use: nothing later is expired, and the size is within bounds.
            break;
        }
        if busy.contains(digest) {
            continue;
        }
        let entry = &entries[digest];
        total = total.saturating_sub(entry.size);
        out.push(Eviction {
            digest: digest.clone(),
            repos: entry.repos.iter().cloned().collect(),
            manifest: entry.refs.is_some(),
            size: entry.size,
        });
    }
    out
}

/// Parses a size such as `50GiB`, `500MB` or `1073741824`.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "ti" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * factor;
    (bytes.is_finite() && bytes >= 1.0).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Algorithm;

    fn d(s: &str) -> Digest {
        Digest::of(Algorithm::Sha256, s.as_bytes())
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn index() -> CacheIndex {
        let repo: RepoName = "docker.io/library/app".parse().unwrap();
        let index = CacheIndex::default();
        // An old manifest used recently references an old layer; an unreferenced old blob.
        index.record(&d("layer"), &repo, 100, None, at(10));
        index.record(&d("config"), &repo, 10, None, at(10));
        index.record(
            &d("manifest"),
            &repo,
            1,
            Some(vec![d("layer"), d("config")]),
            at(1000),
        );
        index.record(&d("orphan"), &repo, 50, None, at(20));
        index.record(&d("recent"), &repo, 40, None, at(900));
        index
    }

    #[test]
    fn ttl_evicts_what_no_recent_manifest_protects() {
        let plan = index().plan(
            at(1100),
            Some(Duration::from_secs(500)),
            None,
            &HashSet::new(),
        );
        let evicted: Vec<_> = plan.iter().map(|e| e.digest.clone()).collect();
        assert_eq!(
            evicted,
            [d("orphan")],
            "the layer lives as long as its manifest"
        );
    }

    #[test]
    fn max_size_evicts_least_recently_used_and_skips_busy_content() {
        let index = index();
        assert_eq!(index.size(), 201);
        let plan = index.plan(at(1100), None, Some(150), &HashSet::new());
        let evicted: Vec<_> = plan.iter().map(|e| e.digest.clone()).collect();
        assert_eq!(evicted, [d("orphan"), d("recent")]);
        let busy = HashSet::from([d("orphan")]);
        let plan = index.plan(at(1100), None, Some(150), &busy);
        let evicted: Vec<_> = plan.iter().map(|e| e.digest.clone()).collect();
        assert_eq!(evicted[0], d("recent"));
        assert!(!evicted.contains(&d("orphan")), "busy content stays");
        let freed: u64 = plan.iter().map(|e| e.size).sum();
        assert!(201 - freed <= 150, "{plan:?}");
        assert!(
            index
                .plan(at(1100), None, Some(1000), &HashSet::new())
                .is_empty()
        );
    }

    #[test]
    fn usage_groups_by_repository_and_counts_shared_content_once_per_group() {
        let index = index();
        let other: RepoName = "ghcr.io/org/tool".parse().unwrap();
        let second: RepoName = "docker.io/library/other".parse().unwrap();
        index.record(&d("layer"), &other, 100, None, at(2000));
        index.record(&d("layer"), &second, 100, None, at(10));
        let by_host = index.usage(|r| r.as_str().split('/').next().map(str::to_owned));
        assert_eq!(
            by_host["docker.io"],
            Usage {
                bytes: 201,
                last_used: at(2000)
            },
            "the shared layer counts once for docker.io"
        );
        assert_eq!(
            by_host["ghcr.io"],
            Usage {
                bytes: 100,
                last_used: at(2000)
            }
        );
        assert!(index.usage(|_| None::<u8>).is_empty());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("50GiB"), Some(50 << 30));
        assert_eq!(parse_size("500MB"), Some(500_000_000));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("1.5 KiB"), Some(1536));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("0"), None);
    }
}
