//! Manifests and tags: validated on push (every referenced blob and child manifest must
//! be in the repository), stored as blobs with revision and tag links in
//! distribution's layout, and indexed by subject for the referrers API.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

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
    /// The manifest's length in bytes.
    pub size: u64,
    /// Its bytes; empty only when read for a HEAD from a store that did not have them.
    pub bytes: Bytes,
}

/// The outcome of a manifest push.
#[derive(Debug, Clone)]
pub struct PutManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
    /// Every tag that now points at the manifest.
    pub tags: Vec<Tag>,
}

/// Tag links checked at once when listing tags.
const TAG_CHECKS: usize = 32;

impl Content {
    /// Stores a manifest under `reference` (a tag, or the digest it must have) and under
    /// `extra_tags` (the OCI `?tag=` parameters).
    pub async fn put_manifest(
        &self,
        name: &RepoName,
        reference: &Reference,
        extra_tags: &[Tag],
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
        // A manifest without a mediaType field (a Docker schema 2 pushed under its
        // Content-Type, say) is served back with the type it was pushed as.
        let implied = manifest::detect_media_type(&bytes);
        let needs_type = implied.as_deref() != Some(parsed.media_type.as_str());

        if !self.blob_stored(&digest).await? {
            self.driver
                .put_content(&layout::blob_data(&digest), bytes)
                .await?;
        }
        if needs_type {
            self.driver
                .put_content(
                    &layout::manifest_media_type(name, &digest),
                    Bytes::from(parsed.media_type.clone()),
                )
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
        let mut tags: Vec<Tag> = match reference {
            Reference::Tag(tag) => vec![tag.clone()],
            Reference::Digest(_) => Vec::new(),
        };
        for tag in extra_tags {
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
        for tag in &tags {
            self.write_tag(name, tag, &digest).await?;
        }
        self.note_repository(name).await;
        Ok(PutManifest {
            digest,
            subject: parsed.subject.map(|s| s.digest),
            tags,
        })
    }

    /// Stores a manifest fetched by the pull-through cache: its exact bytes (already checked
    /// against `digest`), the type it was served as, and `tag` if given. Its blobs are fetched
    /// when asked for, so they are not required here.
    pub(crate) async fn cache_manifest(
        &self,
        name: &RepoName,
        digest: &Digest,
        tag: Option<&Tag>,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<()> {
        let declared = manifest::declared_media_type(&bytes);
        if !self.blob_stored(digest).await? {
            self.driver
                .put_content(&layout::blob_data(digest), bytes)
                .await?;
        }
        if declared.as_deref() != Some(media_type) && manifest::is_manifest_type(media_type) {
            self.driver
                .put_content(
                    &layout::manifest_media_type(name, digest),
                    Bytes::from(media_type.to_owned()),
                )
                .await?;
        }
        self.write_link(&layout::revision_link(name, digest), digest)
            .await?;
        if let Some(tag) = tag {
            self.write_tag(name, tag, digest).await?;
        }
        self.note_repository(name).await;
        Ok(())
    }

    /// Points `tag` at `digest`. The current link is written first, so a crash leaves the
    /// tag at its old manifest or its new one; the index link (history) follows.
    async fn write_tag(&self, name: &RepoName, tag: &Tag, digest: &Digest) -> Result<()> {
        self.write_link(&layout::tag_current_link(name, tag), digest)
            .await?;
        self.write_link(&layout::tag_index_link(name, tag, digest), digest)
            .await
    }

    async fn check_references(&self, name: &RepoName, parsed: &ParsedManifest) -> Result<()> {
        // Each use of an older blob is recorded before its check (`protect_blob`), so a
        // garbage collection sweeping now either sees the record and keeps the blob, or
        // deleted it already and the check fails.
        for blob in &parsed.blobs {
            if !self.exists(&layout::layer_link(name, &blob.digest)).await? {
                return Err(ContentError::ManifestBlobUnknown(blob.digest.clone()));
            }
            if !self.protect_blob(&blob.digest).await? {
                return Err(ContentError::ManifestBlobUnknown(blob.digest.clone()));
            }
        }
        for child in &parsed.manifests {
            if !self.protect_blob(&child.digest).await?
                || !self
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
            let media_type = match hit.media_type {
                Some(declared) => declared,
                None => self.implied_media_type(name, &digest, &hit.bytes).await?,
            };
            return Ok(Manifest {
                digest,
                media_type,
                size: hit.bytes.len() as u64,
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
        let media_type = manifest::declared_media_type(&bytes);
        let cached = CachedManifest {
            bytes: bytes.clone(),
            media_type: media_type.clone(),
        };
        self.manifests.insert(digest.clone(), cached);
        let media_type = match media_type {
            Some(declared) => declared,
            None => self.implied_media_type(name, &digest, &bytes).await?,
        };
        Ok(Manifest {
            digest,
            media_type,
            size: bytes.len() as u64,
            bytes,
        })
    }

    /// The type of a manifest without a mediaType field: as it was pushed, else what its
    /// fields imply.
    async fn implied_media_type(
        &self,
        name: &RepoName,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<String> {
        let recorded = match self
            .driver
            .get_content(&layout::manifest_media_type(name, digest))
            .await
        {
            Ok(b) => String::from_utf8(b.to_vec()).ok(),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        Ok(recorded
            .filter(|t| manifest::is_manifest_type(t.trim()))
            .map(|t| t.trim().to_owned())
            .or_else(|| manifest::detect_media_type(bytes))
            .unwrap_or_else(|| OCI_MANIFEST.to_owned()))
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
                self.delete_manifest_and_tags(name, digest).await.map(drop)
            }
        }
    }

    /// Deletes a manifest by digest with every tag pointing at it; returns those tags.
    pub async fn delete_manifest_and_tags(
        &self,
        name: &RepoName,
        digest: &Digest,
    ) -> Result<Vec<Tag>> {
        self.require_delete()?;
        let m = self
            .get_manifest(name, &Reference::Digest(digest.clone()))
            .await?;
        if let Ok(parsed) = manifest::parse(&m.bytes, Some(&m.media_type))
            && let Some(subject) = parsed.subject
        {
            let link = layout::referrer_link(name, &subject.digest, digest);
            self.remove(link.strip_suffix("/link").unwrap_or(&link))
                .await?;
        }
        let tags = self.tags_pointing_at(name, digest).await?;
        for tag in &tags {
            self.remove(&layout::tag_dir(name, tag)).await?;
        }
        let link = layout::revision_link(name, digest);
        self.remove(link.strip_suffix("/link").unwrap_or(&link))
            .await?;
        self.forget_repository_if_gone(name).await?;
        Ok(tags)
    }

    /// The tags of `name` whose current link names `digest`, sorted: one listing and one
    /// link read per tag (whether `digest` itself is in the repository is not checked).
    pub async fn tags_pointing_at(&self, name: &RepoName, digest: &Digest) -> Result<Vec<Tag>> {
        let reads = self
            .tag_names(name)
            .await?
            .into_iter()
            .map(|tag| async move {
                let current = self
                    .read_link(&layout::tag_current_link(name, &tag))
                    .await?;
                Ok::<_, ContentError>((current.as_ref() == Some(digest)).then_some(tag))
            });
        let mut tags: Vec<Tag> = futures::stream::iter(reads)
            .buffer_unordered(TAG_CHECKS)
            .try_filter_map(|t| async move { Ok(t) })
            .try_collect()
            .await?;
        tags.sort();
        Ok(tags)
    }

    /// The names of a repository's tag directories, sorted, from one listing: unlike
    /// [`Content::tags`], a directory without a current link (see there) is included, so
    /// callers that show a page of them resolve each as they go. `NameUnknown` if the
    /// repository does not exist.
    pub async fn tag_names(&self, name: &RepoName) -> Result<Vec<Tag>> {
        let known = self.dir_exists(&layout::manifests_dir(name)).await?
            || self.dir_exists(&layout::layers_dir(name)).await?;
        if !known {
            return Err(ContentError::NameUnknown(name.clone()));
        }
        let mut names: Vec<Tag> = self
            .list_or_empty(&layout::tags_dir(name))
            .await?
            .into_iter()
            .filter_map(|t| t.parse().ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// All tags of a repository, sorted; `NameUnknown` if the repository does not exist.
    /// A tag directory without a current link (left by a crash or a partial copy) names no
    /// manifest and is not listed.
    pub async fn tags(&self, name: &RepoName) -> Result<Vec<Tag>> {
        let candidates = self.tag_names(name).await?;
        let checks = candidates.into_iter().map(|tag| async move {
            let current = self.exists(&layout::tag_current_link(name, &tag)).await?;
            Ok::<_, ContentError>(current.then_some(tag))
        });
        let mut tags: Vec<Tag> = futures::stream::iter(checks)
            .buffer_unordered(TAG_CHECKS)
            .try_filter_map(|t| async move { Ok(t) })
            .try_collect()
            .await?;
        tags.sort();
        Ok(tags)
    }
}
