//! Walking the repositories tree: the catalog (a directory holding `_manifests` is a
//! repository, as distribution decides; other `_` directories are not descended into), and
//! purging upload sessions abandoned for longer than a given age.

use std::time::{Duration, SystemTime};

use super::{Content, Result};
use crate::oci::RepoName;
use crate::storage::layout;

/// A directory under `repositories/` and the `_`-prefixed entries it holds.
struct RepoDir {
    name: String,
    markers: Vec<String>,
}

impl Content {
    async fn walk_repositories(&self) -> Result<Vec<RepoDir>> {
        let mut found = Vec::new();
        let mut pending = vec![String::new()];
        while let Some(prefix) = pending.pop() {
            let mut markers = Vec::new();
            for child in self
                .entries_or_empty(&layout::repository_path(&prefix))
                .await?
            {
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

    /// All repository names, sorted.
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
