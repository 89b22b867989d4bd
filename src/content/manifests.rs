//! Manifests and tags: validated on push (every referenced blob and child manifest must
//! be in the repository), stored as blobs with revision and tag links in
//! distribution's layout, and indexed by subject for the referrers API.

use bytes::Bytes;

use super::cache::CachedManifest;
use super::{Content, ContentError, Result};
use crate::oci::manifest::{self, OCI_MANIFEST, ParsedManifest};
use crate::oci::{Algorithm, Digest, Reference, RepoName, Tag};
use crate::storage::layout;

/// A stored manifest as served to clients.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// The outcome of a manifest push.
#[derive(Debug, Clone)]
pub struct PutManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

impl Content {
    /// Stores a manifest under `reference` (a tag, or the digest it must have).
    pub async fn put_manifest(
        &self,
        name: &RepoName,
        reference: &Reference,
        bytes: Bytes,
        content_type: Option<&str>,
    ) -> Result<PutManifest> {
        self.require_writable()?;
        let limit = self.options.max_manifest_size;
        if bytes.len() as u64 > limit {
            return Err(ContentError::ManifestTooLarge {
                size: bytes.len() as u64,
                limit,
            });
        }
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), &bytes);
                if &actual != expected {
                    return Err(ContentError::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
                actual
            }
            Reference::Tag(_) => Digest::of(Algorithm::Sha256, &bytes),
        };
        let parsed = manifest::parse(&bytes, content_type)?;
        self.check_references(name, &parsed).await?;

        if !self.blob_stored(&digest).await? {
            self.driver
                .put_content(&layout::blob_data(&digest), bytes)
                .await?;
        }
        self.write_link(&layout::revision_link(name, &digest), &digest)
            .await?;
        if let Some(subject) = &parsed.subject {
            self.write_link(
                &layout::referrer_link(name, &subject.digest, &digest),
                &digest,
            )
            .await?;
        }
        if let Reference::Tag(tag) = reference {
            self.write_link(&layout::tag_index_link(name, tag, &digest), &digest)
                .await?;
            self.write_link(&layout::tag_current_link(name, tag), &digest)
                .await?;
        }
        Ok(PutManifest {
            digest,
            subject: parsed.subject.map(|s| s.digest),
        })
    }

    async fn check_references(&self, name: &RepoName, parsed: &ParsedManifest) -> Result<()> {
        for blob in &parsed.blobs {
            let linked = self.exists(&layout::layer_link(name, &blob.digest)).await?;
            if !linked || !self.blob_stored(&blob.digest).await? {
                return Err(ContentError::ManifestBlobUnknown(blob.digest.clone()));
            }
        }
        for child in &parsed.manifests {
            if !self
                .exists(&layout::revision_link(name, &child.digest))
                .await?
            {
                return Err(ContentError::ManifestBlobUnknown(child.digest.clone()));
            }
        }
        Ok(())
    }

    /// Resolves a reference to a digest whose manifest is in the repository.
    pub async fn resolve(&self, name: &RepoName, reference: &Reference) -> Result<Digest> {
        let unknown = || ContentError::ManifestUnknown(reference.to_string());
        let digest = match reference {
            Reference::Tag(tag) => self
                .read_link(&layout::tag_current_link(name, tag))
                .await?
                .ok_or_else(unknown)?,
            Reference::Digest(d) => d.clone(),
        };
        if self.exists(&layout::revision_link(name, &digest)).await? {
            Ok(digest)
        } else {
            Err(unknown())
        }
    }

    pub async fn get_manifest(&self, name: &RepoName, reference: &Reference) -> Result<Manifest> {
        let digest = self.resolve(name, reference).await?;
        if let Some(hit) = self.manifests.get(&digest) {
            return Ok(Manifest {
                digest,
                media_type: hit.media_type,
                bytes: hit.bytes,
            });
        }
        let bytes = match self.driver.get_content(&layout::blob_data(&digest)).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                return Err(ContentError::ManifestUnknown(reference.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let media_type =
            manifest::detect_media_type(&bytes).unwrap_or_else(|| OCI_MANIFEST.to_owned());
        let cached = CachedManifest {
            bytes: bytes.clone(),
            media_type: media_type.clone(),
        };
        self.manifests.insert(digest.clone(), cached);
        Ok(Manifest {
            digest,
            media_type,
            bytes,
        })
    }

    /// Deletes a manifest by digest (with every tag pointing at it), or just a tag.
    pub async fn delete_manifest(&self, name: &RepoName, reference: &Reference) -> Result<()> {
        self.require_delete()?;
        match reference {
            Reference::Tag(tag) => {
                if self
                    .read_link(&layout::tag_current_link(name, tag))
                    .await?
                    .is_none()
                {
                    return Err(ContentError::ManifestUnknown(tag.to_string()));
                }
                self.remove(&layout::tag_dir(name, tag)).await
            }
            Reference::Digest(digest) => {
                let m = self.get_manifest(name, reference).await?;
                if let Ok(parsed) = manifest::parse(&m.bytes, Some(&m.media_type))
                    && let Some(subject) = parsed.subject
                {
                    let link = layout::referrer_link(name, &subject.digest, digest);
                    self.remove(link.strip_suffix("/link").unwrap_or(&link))
                        .await?;
                }
                for tag in self.tags(name).await? {
                    if self
                        .read_link(&layout::tag_current_link(name, &tag))
                        .await?
                        .as_ref()
                        == Some(digest)
                    {
                        self.remove(&layout::tag_dir(name, &tag)).await?;
                    }
                }
                let link = layout::revision_link(name, digest);
                self.remove(link.strip_suffix("/link").unwrap_or(&link))
                    .await
            }
        }
    }

    /// All tags of a repository, sorted; `NameUnknown` if the repository does not exist.
    pub async fn tags(&self, name: &RepoName) -> Result<Vec<Tag>> {
        let known = self.exists(&layout::manifests_dir(name)).await?
            || self.exists(&layout::layers_dir(name)).await?;
        if !known {
            return Err(ContentError::NameUnknown(name.clone()));
        }
        let mut tags: Vec<Tag> = self
            .list_or_empty(&layout::tags_dir(name))
            .await?
            .into_iter()
            .filter_map(|t| t.parse().ok())
            .collect();
        tags.sort();
        Ok(tags)
    }
}
