//! Garbage collection, mark and sweep, safe to run while pushes and pulls go on.
//!
//! - **Mark.** Every manifest revision of every repository is kept (with `delete_untagged`,
//!   only tagged ones, what they reference as an index, the referrers of kept ones, and
//!   revisions linked within the grace window), and so is everything it references.
//! - **Sweep.** Every blob not marked is deleted unless it is younger than the grace window:
//!   its bytes were written, or a manifest push relied on it ([`layout::blob_last_used`]),
//!   within `grace` of the moment of deletion. So a blob whose upload finished (its 201)
//!   but whose manifest is not pushed yet is never collected while the window lasts, and
//!   upload sessions, which are not blobs yet, are never touched.
//!
//! Whoever is about to rely on a blob stored earlier records that use before checking the
//! blob is there (`Content::protect_blob`): a manifest push for each blob it references, a
//! blob HEAD (a client deciding not to upload it) and a cross-repository mount. The sweep
//! reads that record right before it deletes, so a push racing the deletion either keeps the
//! blob or is refused with BLOB_UNKNOWN / MANIFEST_BLOB_UNKNOWN: no manifest is accepted that
//! points at bytes about to go. (The exception needs the record and the check to fall
//! between the sweep's read and its delete of that blob, two consecutive requests.)

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};

use super::{Content, Result};
use crate::oci::manifest;
use crate::oci::{Algorithm, Digest, Reference, RepoName};
use crate::storage::layout;

/// How a collection runs.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Report what would be deleted, delete nothing.
    pub dry_run: bool,
    /// Also delete manifests no tag reaches (registry:2's `--delete-untagged`).
    pub delete_untagged: bool,
    /// Blobs and manifests written or relied on more recently than this are kept.
    pub grace: Duration,
}

/// What a collection did (or, dry, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub repositories: usize,
    pub manifests_marked: usize,
    pub blobs_marked: usize,
    pub manifests_deleted: Vec<(RepoName, Digest)>,
    pub blobs_deleted: Vec<Digest>,
    pub bytes_freed: u64,
    /// Unreferenced blobs kept because they are inside the grace window.
    pub blobs_young: usize,
}

/// Blobs deleted, and manifests read, at once.
const DELETES_AT_ONCE: usize = 8;
const READS_AT_ONCE: usize = 8;

/// One repository's manifests as the mark phase reads them.
struct Revision {
    references: Vec<Digest>,
    children: Vec<Digest>,
    subject: Option<Digest>,
}

impl Content {
    /// Runs one collection over the whole registry.
    pub async fn collect_garbage(&self, options: &GcOptions) -> Result<GcReport> {
        if !options.dry_run {
            self.require_writable()?;
        }
        let mut report = GcReport::default();
        let mut marked: HashSet<Digest> = HashSet::new();
        for repo in self.repository_names().await? {
            report.repositories += 1;
            self.mark_repository(&repo, options, &mut marked, &mut report)
                .await?;
        }
        report.blobs_marked = marked.len();
        self.sweep(&marked, options, &mut report).await?;
        Ok(report)
    }

    async fn mark_repository(
        &self,
        repo: &RepoName,
        options: &GcOptions,
        marked: &mut HashSet<Digest>,
        report: &mut GcReport,
    ) -> Result<()> {
        let mut digests = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            for hex in self
                .list_or_empty(&layout::revisions_dir(repo, alg))
                .await?
            {
                digests.extend(Digest::from_parts(alg, &hex).ok());
            }
        }
        let revisions: HashMap<Digest, Revision> = futures::stream::iter(digests)
            .map(|digest| async move {
                let revision = self.read_revision(repo, &digest).await;
                (digest, revision)
            })
            .buffer_unordered(READS_AT_ONCE)
            .collect()
            .await;
        let keep = if options.delete_untagged {
            self.reachable(repo, &revisions, options.grace).await?
        } else {
            revisions.keys().cloned().collect()
        };
        let mut unlinked = HashSet::new();
        for (digest, revision) in &revisions {
            if keep.contains(digest) {
                report.manifests_marked += 1;
                marked.insert(digest.clone());
                marked.extend(revision.references.iter().cloned());
            } else {
                if !options.dry_run {
                    self.unlink_manifest(repo, digest, revision.subject.as_ref())
                        .await?;
                    unlinked.insert(digest.clone());
                }
                report
                    .manifests_deleted
                    .push((repo.clone(), digest.clone()));
            }
        }
        if !unlinked.is_empty() {
            self.prune_tag_history(repo, &unlinked).await?;
            self.forget_repository_if_gone(repo).await?;
        }
        Ok(())
    }

    /// Removes `gone` manifests from every tag's history (`tags/<tag>/index`).
    async fn prune_tag_history(&self, repo: &RepoName, gone: &HashSet<Digest>) -> Result<()> {
        for tag in self.list_or_empty(&layout::tags_dir(repo)).await? {
            let Ok(tag) = tag.parse() else { continue };
            for alg in [Algorithm::Sha256, Algorithm::Sha512] {
                let some = layout::tag_index_link(repo, &tag, &Digest::of(alg, b""));
                let dir = some.rsplitn(3, '/').nth(2).unwrap_or(&some).to_owned();
                for hex in self.list_or_empty(&dir).await? {
                    let Ok(d) = Digest::from_parts(alg, &hex) else {
                        continue;
                    };
                    if gone.contains(&d) {
                        self.remove(&format!("{dir}/{hex}")).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A revision's references. One that cannot be read or parsed references nothing, but
    /// is still kept itself (its bytes may be a manifest type this build does not know).
    async fn read_revision(&self, repo: &RepoName, digest: &Digest) -> Revision {
        let empty = Revision {
            references: Vec::new(),
            children: Vec::new(),
            subject: None,
        };
        let Ok(m) = self
            .get_manifest(repo, &Reference::Digest(digest.clone()))
            .await
        else {
            return empty;
        };
        match manifest::parse(&m.bytes, Some(&m.media_type)) {
            Ok(parsed) => Revision {
                references: parsed.references(),
                children: parsed.manifests.iter().map(|d| d.digest.clone()).collect(),
                subject: parsed.subject.map(|s| s.digest),
            },
            Err(e) => {
                tracing::warn!(repository = %repo, manifest = %digest, error = %e,
                    "garbage collection: cannot parse a manifest; keeping it and nothing it may reference");
                empty
            }
        }
    }

    /// The revisions to keep when untagged ones go: tagged ones, those linked or relied on
    /// within the grace window, what kept indexes list, and the referrers of kept ones.
    async fn reachable(
        &self,
        repo: &RepoName,
        revisions: &HashMap<Digest, Revision>,
        grace: Duration,
    ) -> Result<HashSet<Digest>> {
        let mut keep: HashSet<Digest> = HashSet::new();
        for tag in self.tags(repo).await? {
            if let Some(d) = self
                .read_link(&layout::tag_current_link(repo, &tag))
                .await?
            {
                keep.insert(d);
            }
        }
        for digest in revisions.keys() {
            if !keep.contains(digest) && self.recent_manifest(repo, digest, grace).await? {
                keep.insert(digest.clone());
            }
        }
        loop {
            let before = keep.len();
            for (digest, revision) in revisions {
                if keep.contains(digest) {
                    keep.extend(revision.children.iter().cloned());
                } else if revision.subject.as_ref().is_some_and(|s| keep.contains(s)) {
                    keep.insert(digest.clone());
                }
            }
            if keep.len() == before {
                return Ok(keep);
            }
        }
    }

    /// Whether a manifest was linked into `repo`, or relied on by a push, within `grace`.
    async fn recent_manifest(&self, repo: &RepoName, d: &Digest, grace: Duration) -> Result<bool> {
        for path in [layout::revision_link(repo, d), layout::blob_last_used(d)] {
            if let Ok(info) = self.driver.stat_object(&path).await
                && within(info.modified, grace)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Removes a manifest from a repository: its revision (and media type) and its referrer
    /// link. Its bytes go with the sweep.
    async fn unlink_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        subject: Option<&Digest>,
    ) -> Result<()> {
        let link = layout::revision_link(repo, digest);
        self.remove(link.strip_suffix("/link").unwrap_or(&link))
            .await?;
        if let Some(subject) = subject {
            let link = layout::referrer_link(repo, subject, digest);
            self.remove(link.strip_suffix("/link").unwrap_or(&link))
                .await?;
        }
        Ok(())
    }

    /// Deletes the bytes of every blob neither marked nor young.
    async fn sweep(
        &self,
        marked: &HashSet<Digest>,
        options: &GcOptions,
        report: &mut GcReport,
    ) -> Result<()> {
        let mut last_used: HashMap<Digest, SystemTime> = HashMap::new();
        let mut data: Vec<(Digest, u64)> = Vec::new();
        // Every object in each blob's directory (its data, a use record, leftovers of an
        // unfinished write), so that deleting one is a single request on an object store.
        let mut objects: HashMap<Digest, Vec<String>> = HashMap::new();
        let mut walk = self.driver.walk(&layout::blobs_root());
        while let Some((path, info)) = walk.try_next().await? {
            let Some(digest) = layout::blob_of_path(&path) else {
                continue;
            };
            if path.ends_with("/lastused") {
                last_used.insert(digest.clone(), info.modified);
            } else if layout::blob_of_data_path(&path).is_some() && !marked.contains(&digest) {
                if within(info.modified, options.grace) {
                    report.blobs_young += 1;
                } else {
                    data.push((digest.clone(), info.size));
                }
            }
            if !marked.contains(&digest) {
                objects.entry(digest).or_default().push(path);
            }
        }
        let candidates: Vec<(Digest, u64)> = data
            .into_iter()
            .filter(|(d, _)| {
                let young = last_used.get(d).is_some_and(|t| within(*t, options.grace));
                report.blobs_young += usize::from(young);
                !young
            })
            .collect();
        if options.dry_run {
            for (digest, size) in candidates {
                report.bytes_freed += size;
                report.blobs_deleted.push(digest);
            }
            return Ok(());
        }
        let grace = options.grace;
        let objects = &objects;
        let mut deletions = futures::stream::iter(candidates)
            .map(|(digest, size)| async move {
                // Read again right before deleting: a push may rely on it since the walk.
                let used = self
                    .driver
                    .stat_object(&layout::blob_last_used(&digest))
                    .await;
                if used.is_ok_and(|i| within(i.modified, grace)) {
                    return Ok(None);
                }
                let paths = objects.get(&digest).cloned().unwrap_or_default();
                self.driver.delete_objects(paths).await?;
                Ok::<_, super::ContentError>(Some((digest, size)))
            })
            .buffer_unordered(DELETES_AT_ONCE);
        while let Some(deleted) = deletions.next().await {
            match deleted? {
                Some((digest, size)) => {
                    report.bytes_freed += size;
                    report.blobs_deleted.push(digest);
                }
                None => report.blobs_young += 1,
            }
        }
        Ok(())
    }

    /// Whether blob `digest` is stored, for a manifest push that relies on it. A blob
    /// stored a while ago may be unreferenced and about to be collected, so the use is
    /// recorded first (unless an earlier record is recent) and the bytes are checked after.
    pub(crate) async fn protect_blob(&self, digest: &Digest) -> Result<bool> {
        let fresh = self.options.protect_after;
        let data = layout::blob_data(digest);
        match self.driver.stat_object(&data).await {
            Ok(info) if within(info.modified, fresh) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let path = layout::blob_last_used(digest);
        let recorded = match self.driver.stat_object(&path).await {
            Ok(info) => within(info.modified, fresh),
            Err(_) => false,
        };
        if !recorded {
            let now = super::uploads::rfc3339(SystemTime::now());
            self.driver.put_content(&path, now.into()).await?;
        }
        self.exists(&data).await
    }
}

/// Whether `t` is less than `age` ago (or in the future: another machine's clock).
pub(crate) fn within(t: SystemTime, age: Duration) -> bool {
    SystemTime::now()
        .duration_since(t)
        .map_or(true, |elapsed| elapsed < age)
}
