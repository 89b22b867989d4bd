//! Removal of cached content by the pull-through cache's eviction, and the inventory it
//! rebuilds its index from at startup. Unlike deletes through the API, these need no
//! `storage.delete.enabled`: a mirror's cache is the mirror's to manage.

use std::time::SystemTime;

use super::{Content, Result};
use crate::oci::manifest;
use crate::oci::{Algorithm, Digest, Reference, RepoName};
use crate::storage::layout;

/// One blob or manifest linked in a repository.
#[derive(Debug, Clone)]
pub struct Item {
    pub digest: Digest,
    pub repo: RepoName,
    pub size: u64,
    pub modified: SystemTime,
    /// For a manifest: what it references.
    pub refs: Option<Vec<Digest>>,
}

impl Content {
    /// Removes a blob's links in `repos` and its bytes.
    pub(crate) async fn evict_blob(&self, digest: &Digest, repos: &[RepoName]) -> Result<()> {
        for repo in repos {
            let link = layout::layer_link(repo, digest);
            self.remove(link.strip_suffix("/link").unwrap_or(&link))
                .await?;
        }
        self.remove(&layout::blob_dir(digest)).await
    }

    /// Removes a manifest from `repos` (with the tags that point at it) and its bytes.
    pub(crate) async fn evict_manifest(&self, digest: &Digest, repos: &[RepoName]) -> Result<()> {
        for repo in repos {
            for tag in self.tags(repo).await.unwrap_or_default() {
                let current = self
                    .read_link(&layout::tag_current_link(repo, &tag))
                    .await?;
                if current.as_ref() == Some(digest) {
                    self.remove(&layout::tag_dir(repo, &tag)).await?;
                }
            }
            let link = layout::revision_link(repo, digest);
            self.remove(link.strip_suffix("/link").unwrap_or(&link))
                .await?;
            self.forget_repository_if_gone(repo).await?;
        }
        self.remove(&layout::blob_dir(digest)).await
    }

    /// Every blob and manifest linked in a repository, for the mirror's cache index.
    pub(crate) async fn inventory(&self) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        for repo in self.repository_names().await? {
            for alg in [Algorithm::Sha256, Algorithm::Sha512] {
                for hex in self
                    .list_or_empty(&layout::layer_links_dir(&repo, alg))
                    .await?
                {
                    let Ok(digest) = Digest::from_parts(alg, &hex) else {
                        continue;
                    };
                    if let Ok(info) = self.driver.stat_object(&layout::blob_data(&digest)).await {
                        items.push(Item {
                            digest,
                            repo: repo.clone(),
                            size: info.size,
                            modified: info.modified,
                            refs: None,
                        });
                    }
                }
                for hex in self
                    .list_or_empty(&layout::revisions_dir(&repo, alg))
                    .await?
                {
                    let Ok(digest) = Digest::from_parts(alg, &hex) else {
                        continue;
                    };
                    let Ok(m) = self
                        .get_manifest(&repo, &Reference::Digest(digest.clone()))
                        .await
                    else {
                        continue;
                    };
                    let modified = self
                        .driver
                        .stat_object(&layout::blob_data(&digest))
                        .await
                        .map_or(SystemTime::now(), |i| i.modified);
                    let refs = manifest::parse(&m.bytes, Some(&m.media_type))
                        .map(|p| p.references())
                        .unwrap_or_default();
                    items.push(Item {
                        digest,
                        repo: repo.clone(),
                        size: m.size,
                        modified,
                        refs: Some(refs),
                    });
                }
            }
        }
        Ok(items)
    }
}
