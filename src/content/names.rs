//! The name index: every repository name, in memory and sorted, so that the catalog, the web
//! UI's search and `docker search` never walk the repository tree per request. Pure data
//! structure; [`super::catalog`] keeps it current (local pushes and deletes at once, other
//! replicas through name markers in storage, everything else through a periodic rescan).
//!
//! Changes made while a listing of the markers is in flight win over that listing: each
//! entry remembers the epoch it was inserted in, and removals leave a tombstone for that
//! epoch, so a refresh never undoes what this process did after the refresh began.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::RwLock;

/// One page of a search.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchPage {
    /// How many visible names match.
    pub total: usize,
    /// The matches in `[offset, offset + limit)`, sorted.
    pub names: Vec<String>,
}

#[derive(Default)]
struct Inner {
    /// Name -> the epoch it was last inserted in.
    names: BTreeMap<String, u64>,
    /// Name -> the epoch it was removed in, until a refresh that began later has run.
    removed: HashMap<String, u64>,
    epoch: u64,
    /// Bytes of the names themselves, kept as they change.
    name_bytes: usize,
}

/// The set of repository names.
pub struct NameIndex {
    inner: RwLock<Inner>,
    ready: tokio::sync::watch::Sender<bool>,
}

impl Default for NameIndex {
    fn default() -> Self {
        NameIndex {
            inner: RwLock::new(Inner::default()),
            ready: tokio::sync::watch::Sender::new(false),
        }
    }
}

/// A per-entry estimate of a `BTreeMap<String, u64>` node's share and the `String` header.
const ENTRY_OVERHEAD: usize = 64;

impl NameIndex {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves once the index has been loaded at startup.
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Whether the index has been loaded.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    pub(crate) fn mark_ready(&self) {
        self.ready.send_replace(true);
    }

    pub fn len(&self) -> usize {
        self.read().names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An estimate of the memory the index holds, in bytes.
    pub fn approx_bytes(&self) -> usize {
        let inner = self.read();
        inner.name_bytes + inner.names.len() * ENTRY_OVERHEAD
    }

    pub fn contains(&self, name: &str) -> bool {
        self.read().names.contains_key(name)
    }

    /// Adds a name; true if it was not there.
    pub fn insert(&self, name: &str) -> bool {
        let mut inner = self.write();
        let epoch = inner.epoch;
        inner.removed.remove(name);
        match inner.names.insert(name.to_owned(), epoch) {
            Some(_) => false,
            None => {
                inner.name_bytes += name.len();
                true
            }
        }
    }

    /// Removes a name; true if it was there.
    pub fn remove(&self, name: &str) -> bool {
        let mut inner = self.write();
        let epoch = inner.epoch;
        inner.removed.insert(name.to_owned(), epoch);
        let was = inner.names.remove(name).is_some();
        if was {
            inner.name_bytes -= name.len();
        }
        was
    }

    /// Starts a listing of the truth (markers or a full scan): its result is applied with
    /// [`NameIndex::apply`] and this epoch.
    pub fn begin(&self) -> u64 {
        let mut inner = self.write();
        inner.epoch += 1;
        inner.epoch
    }

    /// Makes the index `listed`, except for names this process inserted or removed since
    /// `epoch` began. Returns how many names were added, and the names removed.
    pub fn apply(
        &self,
        epoch: u64,
        listed: impl IntoIterator<Item = String>,
    ) -> (usize, Vec<String>) {
        let mut inner = self.write();
        let mut fresh = BTreeMap::new();
        let mut name_bytes = 0;
        let mut added = 0;
        for name in listed {
            if inner.removed.get(&name).is_some_and(|&e| e >= epoch) {
                continue;
            }
            let since = inner.names.get(&name).copied().unwrap_or_else(|| {
                added += 1;
                epoch
            });
            name_bytes += name.len();
            fresh.insert(name, since);
        }
        let mut removed = Vec::new();
        for (name, &since) in &inner.names {
            if fresh.contains_key(name) {
                continue;
            }
            if since >= epoch {
                name_bytes += name.len();
                fresh.insert(name.clone(), since);
            } else {
                removed.push(name.clone());
            }
        }
        inner.names = fresh;
        inner.name_bytes = name_bytes;
        inner.removed.retain(|_, e| *e >= epoch);
        (added, removed)
    }

    /// Up to `n` names after `last` (exclusive) that `visible` accepts, and whether more
    /// visible names follow.
    pub fn page(
        &self,
        last: Option<&str>,
        n: usize,
        visible: impl Fn(&str) -> bool,
    ) -> (Vec<String>, bool) {
        let inner = self.read();
        let start = match last {
            Some(last) if !last.is_empty() => Bound::Excluded(last),
            _ => Bound::Unbounded,
        };
        let mut matching = inner
            .names
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(name, _)| name.as_str())
            .filter(|name| visible(name));
        let page: Vec<String> = matching.by_ref().take(n).map(str::to_owned).collect();
        let more = matching.next().is_some();
        (page, more)
    }

    /// Visible names containing `query` (case-insensitively, anywhere in the name): how many,
    /// and those in `[offset, offset + limit)`.
    pub fn search(
        &self,
        query: &str,
        offset: usize,
        limit: usize,
        visible: impl Fn(&str) -> bool,
    ) -> SearchPage {
        let query = query.trim().to_lowercase();
        let inner = self.read();
        let mut page = SearchPage::default();
        for name in inner.names.keys() {
            // Names are lowercase by the distribution grammar.
            if !name.contains(query.as_str()) || !visible(name) {
                continue;
            }
            if page.total >= offset && page.names.len() < limit {
                page.names.push(name.clone());
            }
            page.total += 1;
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(names: &[&str]) -> NameIndex {
        let index = NameIndex::default();
        for n in names {
            index.insert(n);
        }
        index
    }

    #[test]
    fn pages_follow_sorted_order_and_skip_invisible() {
        let i = index(&["b", "a/x", "c", "a", "team/app"]);
        assert_eq!(
            i.page(None, 2, |_| true),
            (vec!["a".into(), "a/x".into()], true)
        );
        assert_eq!(
            i.page(Some("a/x"), 2, |_| true),
            (vec!["b".into(), "c".into()], true)
        );
        assert_eq!(
            i.page(Some("c"), 2, |_| true),
            (vec!["team/app".into()], false)
        );
        // More is false when only invisible names follow.
        assert_eq!(
            i.page(Some("a/x"), 2, |n| n != "team/app"),
            (vec!["b".into(), "c".into()], false)
        );
        // `last` need not be a name in the index.
        assert_eq!(i.page(Some("bb"), 10, |_| true).0, vec!["c", "team/app"]);
        assert_eq!(i.page(Some(""), 1, |_| true).0, vec!["a"]);
    }

    #[test]
    fn search_is_substring_at_any_depth_case_insensitive() {
        let i = index(&[
            "library/alpine",
            "team/alpine-tools",
            "deep/a/b/c/alp",
            "busybox",
        ]);
        let all = i.search("ALP", 0, 10, |_| true);
        assert_eq!(all.total, 3);
        assert_eq!(
            all.names,
            vec!["deep/a/b/c/alp", "library/alpine", "team/alpine-tools"]
        );
        let second = i.search("alp", 1, 1, |_| true);
        assert_eq!(
            (second.total, second.names),
            (3, vec!["library/alpine".into()])
        );
        let hidden = i.search("alp", 0, 10, |n| !n.starts_with("team/"));
        assert_eq!(hidden.total, 2);
        assert_eq!(i.search(" ", 0, 10, |_| true).total, 4, "blank lists all");
        assert_eq!(
            i.search("a/b/c", 0, 10, |_| true).names,
            vec!["deep/a/b/c/alp"]
        );
    }

    #[test]
    fn a_listing_does_not_undo_changes_made_while_it_ran() {
        let i = index(&["kept", "gone-elsewhere", "removed-here"]);
        let epoch = i.begin();
        // While the listing runs, this process adds one name and removes another.
        i.insert("new-here");
        i.remove("removed-here");
        // The listing saw neither change, and another replica removed gone-elsewhere.
        let listed = ["kept", "removed-here", "added-elsewhere"].map(String::from);
        assert_eq!(
            i.apply(epoch, listed),
            (1, vec!["gone-elsewhere".to_owned()])
        );
        assert_eq!(
            i.page(None, 10, |_| true).0,
            vec!["added-elsewhere", "kept", "new-here"]
        );
        // The next listing is the truth again.
        let epoch = i.begin();
        assert_eq!(
            i.apply(epoch, ["kept".to_owned()]),
            (0, vec!["added-elsewhere".to_owned(), "new-here".to_owned()])
        );
        assert_eq!(i.page(None, 10, |_| true).0, vec!["kept"]);
        assert_eq!(i.approx_bytes(), 4 + ENTRY_OVERHEAD);
    }

    #[tokio::test]
    async fn waits_until_ready() {
        let i = std::sync::Arc::new(NameIndex::default());
        assert!(!i.is_ready());
        let waiter = tokio::spawn({
            let i = i.clone();
            async move { i.wait_ready().await }
        });
        i.mark_ready();
        let bounded = std::time::Duration::from_secs(5);
        tokio::time::timeout(bounded, waiter)
            .await
            .expect("a waiter wakes when the index is marked ready")
            .unwrap();
        tokio::time::timeout(bounded, i.wait_ready())
            .await
            .expect("a ready index does not wait");
    }
}
