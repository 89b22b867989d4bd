//! Walking the repositories tree: the catalog (a directory holding `_manifests` is a
//! repository, as distribution decides; other `_` directories are not descended into), the
//! upkeep of the [`NameIndex`](super::NameIndex) that serves it, and purging upload sessions
//! abandoned for longer than a given age.
//!
//! The index learns of a repository three ways: this process's own pushes and deletes (at
//! once), other replicas' through the name markers they write ([`Content::refresh_names`],
//! one listing), and anything else that writes the storage (distribution, files copied in)
//! through a full walk of the tree ([`Content::rescan_names`]).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::{Content, Result};
use crate::oci::RepoName;
use crate::storage::layout;

/// Directories listed at once while walking the tree (an object store's round trips).
const WALK_CONCURRENCY: usize = 16;

/// A directory under `repositories/` and the `_`-prefixed entries it holds.
struct RepoDir {
    name: String,
    markers: Vec<String>,
}

impl Content {
    async fn walk_repositories(&self) -> Result<Vec<RepoDir>> {
        let mut found = Vec::new();
        let mut pending = vec![String::new()];
        let mut listing = FuturesUnordered::new();
        loop {
            while listing.len() < WALK_CONCURRENCY
                && let Some(prefix) = pending.pop()
            {
                listing.push(async move {
                    let entries = self
                        .entries_or_empty(&layout::repository_path(&prefix))
                        .await;
                    (prefix, entries)
                });
            }
            let Some((prefix, entries)) = listing.next().await else {
                break;
            };
            let mut markers = Vec::new();
            for child in entries? {
                if child.name.starts_with('_') {
                    markers.push(child.name);
                } else if child.is_dir {
                    pending.push(if prefix.is_empty() {
                        child.name
                    } else {
                        format!("{prefix}/{}", child.name)
                    });
                }
            }
            if !markers.is_empty() {
                found.push(RepoDir {
                    name: prefix,
                    markers,
                });
            }
        }
        Ok(found)
    }

    /// Every repository with manifests or blobs linked, for walks over all content.
    pub(crate) async fn repository_names(&self) -> Result<Vec<RepoName>> {
        Ok(self
            .walk_repositories()
            .await?
            .into_iter()
            .filter(|d| {
                d.markers
                    .iter()
                    .any(|m| m == "_manifests" || m == "_layers")
            })
            .filter_map(|d| d.name.parse().ok())
            .collect())
    }

    /// All repository names, sorted, from a walk of the tree.
    pub async fn repositories(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .walk_repositories()
            .await?
            .into_iter()
            .filter(|d| {
                d.markers.iter().any(|m| m == "_manifests") && d.name.parse::<RepoName>().is_ok()
            })
            .map(|d| d.name)
            .collect();
        names.sort();
        Ok(names)
    }

    /// The name index (loaded by [`Content::load_names`]).
    pub fn names(&self) -> std::sync::Arc<super::NameIndex> {
        self.names.clone()
    }

    /// Records that `name` has manifests (after a push): its marker, then the index.
    pub(crate) async fn note_repository(&self, name: &RepoName) {
        if self.names.contains(name.as_str()) {
            return;
        }
        if !self.options.read_only
            && let Err(e) = self
                .driver
                .put_content(&layout::name_marker(name.as_str()), Bytes::new())
                .await
        {
            // The next rescan writes it; until then other replicas may not list the name.
            tracing::warn!(repository = %name, error = %e, "could not write the repository's name marker");
        }
        self.names.insert(name.as_str());
    }

    /// Forgets `name` if it has no manifests left (after a delete or an eviction).
    pub(crate) async fn forget_repository_if_gone(&self, name: &RepoName) -> Result<()> {
        if self.dir_exists(&layout::manifests_dir(name)).await? {
            return Ok(());
        }
        self.remove(&layout::name_marker(name.as_str())).await?;
        self.names.remove(name.as_str());
        Ok(())
    }

    /// Loads the index at startup: from the markers when a full scan has written them,
    /// else by a full scan (returns true then). Marks it ready.
    pub async fn load_names(&self) -> Result<bool> {
        let complete = self.exists(&layout::name_markers_complete()).await?;
        if complete {
            self.refresh_names().await?;
        } else {
            self.rescan_names().await?;
        }
        self.names.mark_ready();
        Ok(!complete)
    }

    /// Makes the index the set of name markers (one listing): what other replicas pushed
    /// and deleted since the last refresh. A name whose marker went but whose repository
    /// still has manifests (emptied on one replica, pushed again on another that still
    /// listed it) keeps its place, and its marker is written again.
    pub async fn refresh_names(&self) -> Result<(usize, usize)> {
        let epoch = self.names.begin();
        let listed = self
            .entries_or_empty(&layout::name_markers())
            .await?
            .into_iter()
            .filter(|e| !e.is_dir)
            .map(|e| layout::name_of_marker(&e.name));
        let (added, gone) = self.names.apply(epoch, listed);
        let mut removed = 0;
        for name in gone {
            let Ok(repo) = name.parse::<RepoName>() else {
                removed += 1;
                continue;
            };
            if self.dir_exists(&layout::manifests_dir(&repo)).await? {
                self.note_repository(&repo).await;
            } else {
                removed += 1;
            }
        }
        Ok((added, removed))
    }

    /// Walks the whole tree and makes the index, and the markers, what it finds. Markers
    /// are written for repositories that have none and removed for ones that are gone
    /// (unless written after the walk began: a push racing the walk).
    pub async fn rescan_names(&self) -> Result<(usize, usize)> {
        let epoch = self.names.begin();
        let began = SystemTime::now();
        let mut markers: HashMap<String, SystemTime> = HashMap::new();
        let mut walk = self.driver.walk(&layout::name_markers());
        while let Some(item) = walk.next().await {
            let (path, info) = item?;
            if let Some(file) = path.rsplit('/').next() {
                markers.insert(layout::name_of_marker(file), info.modified);
            }
        }
        let found = self.repositories().await?;
        if !self.options.read_only {
            let present: HashSet<&str> = found.iter().map(String::as_str).collect();
            for name in &found {
                if !markers.contains_key(name) {
                    self.driver
                        .put_content(&layout::name_marker(name), Bytes::new())
                        .await?;
                }
            }
            for (name, modified) in &markers {
                if !present.contains(name.as_str()) && *modified < began {
                    self.remove(&layout::name_marker(name)).await?;
                }
            }
            self.driver
                .put_content(&layout::name_markers_complete(), Bytes::new())
                .await?;
        }
        let (added, removed) = self.names.apply(epoch, found);
        Ok((added, removed.len()))
    }

    /// Keeps the index current: loads it (retrying every `refresh` until storage answers),
    /// then refreshes it from the markers every `refresh` and rescans the tree every
    /// `rescan` (and right after a load from the markers, for what changed while this
    /// process was not running). Without markers to trust (a read-only registry that never
    /// had a scan write them), only rescans.
    pub async fn maintain_names(
        self,
        refresh: Duration,
        rescan: Duration,
        observe: impl Fn(&super::NameIndex) + Send + 'static,
    ) {
        let mut ticks = tokio::time::interval(refresh);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_rescan = None;
        let mut markers_usable = false;
        loop {
            ticks.tick().await;
            observe(&self.names);
            let now = tokio::time::Instant::now();
            let due = match next_rescan {
                Some(due) => due,
                None => match self.load_names().await {
                    Ok(scanned) => {
                        markers_usable = !self.options.read_only
                            || self
                                .exists(&layout::name_markers_complete())
                                .await
                                .unwrap_or(false);
                        tracing::info!(
                            repositories = self.names.len(),
                            ms = now.elapsed().as_millis() as u64,
                            "repository name index loaded"
                        );
                        if scanned {
                            next_rescan = Some(now + rescan);
                            continue;
                        }
                        // Loaded from the markers: scan at once for what changed while
                        // this process was not running.
                        now
                    }
                    Err(e) => {
                        tracing::error!(
                            error = %e,
                            "could not load the repository name index; retrying in {}s",
                            refresh.as_secs()
                        );
                        continue;
                    }
                },
            };
            let rescan_due = now >= due;
            let outcome = if rescan_due {
                next_rescan = Some(now + rescan);
                self.rescan_names().await
            } else if markers_usable {
                self.refresh_names().await
            } else {
                continue;
            };
            match outcome {
                Ok((0, 0)) => {}
                Ok((added, removed)) => tracing::info!(
                    added,
                    removed,
                    repositories = self.names.len(),
                    rescan = rescan_due,
                    "repository name index updated"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, rescan = rescan_due, "could not update the repository name index")
                }
            }
        }
    }

    /// Deletes upload sessions with no activity for `age`; returns how many were removed
    /// (or, with `dry_run`, would be).
    pub async fn purge_uploads(&self, age: Duration, dry_run: bool) -> Result<usize> {
        let cutoff = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut purged = 0;
        for dir in self.walk_repositories().await? {
            let Ok(name) = dir.name.parse::<RepoName>() else {
                continue;
            };
            if !dir.markers.iter().any(|m| m == "_uploads") {
                continue;
            }
            for id in self.list_or_empty(&layout::uploads_dir(&name)).await? {
                // The state is saved after every chunk (an object store has no data object
                // before the upload completes); the data and the start for older sessions.
                let mut last_active = None;
                for path in [
                    layout::upload_state(&name, &id),
                    layout::upload_data(&name, &id),
                    layout::upload_started_at(&name, &id),
                ] {
                    if let Ok(info) = self.driver.stat_object(&path).await {
                        last_active = last_active.max(Some(info.modified));
                        break;
                    }
                }
                if last_active.is_some_and(|t| t >= cutoff) {
                    continue;
                }
                purged += 1;
                if !dry_run {
                    self.discard_upload(&name, &id).await?;
                }
            }
        }
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::ContentOptions;
    use crate::storage::memory::MemoryDriver;

    #[tokio::test]
    async fn purges_only_idle_sessions() {
        let c = Content::new(
            std::sync::Arc::new(MemoryDriver::new()),
            ContentOptions::default(),
        );
        let name: RepoName = "a/b".parse().unwrap();
        let id = c.start_upload(&name).await.unwrap();
        assert_eq!(
            c.purge_uploads(Duration::from_secs(3600), false)
                .await
                .unwrap(),
            0
        );
        assert_eq!(c.purge_uploads(Duration::ZERO, true).await.unwrap(), 1);
        assert!(
            c.upload_offset(&name, &id).await.is_ok(),
            "dry run keeps the session"
        );
        assert_eq!(c.purge_uploads(Duration::ZERO, false).await.unwrap(), 1);
        assert!(c.upload_offset(&name, &id).await.is_err());
        assert!(
            c.repositories().await.unwrap().is_empty(),
            "a repository with only uploads is not listed"
        );
    }
}
