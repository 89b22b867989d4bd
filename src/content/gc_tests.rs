//! Garbage collection over the filesystem driver, with blob ages set on disk: what is kept,
//! what goes, untagged manifests, indexes and referrers, the grace window, and the record a
//! manifest push leaves when it relies on an old blob.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::{Content, ContentError, ContentOptions, GcOptions};
use crate::oci::{Algorithm, Digest, Reference, RepoName, Tag};
use crate::storage::{fs::FsDriver, layout};

const HOUR: Duration = Duration::from_secs(3600);

struct Fixture {
    dir: tempfile::TempDir,
    content: Content,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let options = ContentOptions {
        delete_enabled: true,
        ..ContentOptions::default()
    };
    let content = Content::new(Arc::new(FsDriver::new(dir.path())), options);
    Fixture { dir, content }
}

impl Fixture {
    async fn blob(&self, repo: &RepoName, bytes: &'static [u8]) -> Digest {
        let digest = Digest::of(Algorithm::Sha256, bytes);
        let body = futures::stream::iter([Ok(Bytes::from_static(bytes))]);
        self.content.put_blob(repo, &digest, body).await.unwrap();
        digest
    }

    /// An image manifest with `layers`, pushed under `tag` (or by digest).
    async fn image(&self, repo: &RepoName, layers: &[&Digest], tag: Option<&str>) -> Digest {
        let config = self.blob(repo, b"{}").await;
        let descs: Vec<String> = layers
            .iter()
            .map(|d| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":1}}"#))
            .collect();
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{}]}}"#,
            descs.join(",")
        );
        self.manifest(repo, json, tag).await
    }

    async fn manifest(&self, repo: &RepoName, json: String, tag: Option<&str>) -> Digest {
        let digest = Digest::of(Algorithm::Sha256, json.as_bytes());
        let reference = match tag {
            Some(t) => Reference::Tag(t.parse().unwrap()),
            None => Reference::Digest(digest.clone()),
        };
        self.content
            .put_manifest(repo, &reference, &[], Bytes::from(json), None)
            .await
            .unwrap();
        digest
    }

    /// Makes every file of the registry look written `age` ago.
    fn age_everything(&self, age: Duration) {
        let when = SystemTime::now() - age;
        for path in walk(self.dir.path()) {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
    }

    fn stored(&self, d: &Digest) -> bool {
        self.dir
            .path()
            .join(layout::blob_data(d).trim_start_matches('/'))
            .exists()
    }

    async fn gc(&self, grace: Duration, delete_untagged: bool) -> super::GcReport {
        let options = GcOptions {
            dry_run: false,
            delete_untagged,
            grace,
        };
        self.content.collect_garbage(&options).await.unwrap()
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn repo(name: &str) -> RepoName {
    name.parse().unwrap()
}

#[tokio::test]
async fn unreferenced_blobs_go_and_referenced_ones_stay() {
    let f = fixture();
    let app = repo("team/app");
    let kept = f.blob(&app, b"layer kept").await;
    let orphan = f.blob(&app, b"layer orphaned").await;
    let image = f.image(&app, &[&kept], Some("v1")).await;
    f.age_everything(2 * HOUR);

    let dry = f
        .content
        .collect_garbage(&GcOptions {
            dry_run: true,
            delete_untagged: false,
            grace: HOUR,
        })
        .await
        .unwrap();
    assert_eq!(dry.blobs_deleted, vec![orphan.clone()]);
    assert!(f.stored(&orphan), "a dry run deletes nothing");

    let report = f.gc(HOUR, false).await;
    assert_eq!(report.blobs_deleted, vec![orphan.clone()]);
    assert_eq!(report.bytes_freed, b"layer orphaned".len() as u64);
    assert!(!f.stored(&orphan));
    assert!(f.stored(&kept) && f.stored(&image));
    let got = f
        .content
        .get_manifest(&app, &Reference::Tag("v1".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(got.digest, image);
}

#[tokio::test]
async fn blobs_inside_the_grace_window_are_kept() {
    let f = fixture();
    let app = repo("app");
    let orphan = f.blob(&app, b"pushed, manifest not yet").await;
    let report = f.gc(HOUR, false).await;
    assert!(report.blobs_deleted.is_empty());
    assert_eq!(report.blobs_young, 1);
    assert!(f.stored(&orphan));
    // The manifest arrives after the collection: the push succeeds.
    f.image(&app, &[&orphan], Some("late")).await;
}

#[tokio::test]
async fn untagged_manifests_go_with_their_blobs_but_not_what_tags_reach() {
    let f = fixture();
    let app = repo("app");
    let old_layer = f.blob(&app, b"old layer").await;
    let old = f.image(&app, &[&old_layer], Some("v1")).await;
    let new_layer = f.blob(&app, b"new layer").await;
    let new = f.image(&app, &[&new_layer], Some("v1")).await; // v1 moves on
    // An index, tagged, whose children are untagged; and a signature of it.
    let amd = f.blob(&app, b"amd64 layer").await;
    let child = f.image(&app, &[&amd], None).await;
    let index = f
        .manifest(
            &app,
            format!(r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{child}","size":1}}]}}"#),
            Some("multi"),
        )
        .await;
    let sig_layer = f.blob(&app, b"signature").await;
    let config = Digest::of(Algorithm::Sha256, b"{}");
    let sig = f
        .manifest(
            &app,
            format!(r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.dev.sig","digest":"{sig_layer}","size":9}}],"subject":{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{index}","size":1}}}}"#),
            None,
        )
        .await;
    f.age_everything(2 * HOUR);

    let report = f.gc(HOUR, true).await;
    assert_eq!(report.manifests_deleted, vec![(app.clone(), old.clone())]);
    assert!(!f.stored(&old) && !f.stored(&old_layer));
    for kept in [&new, &new_layer, &index, &child, &amd, &sig, &sig_layer] {
        assert!(f.stored(kept), "{kept} was collected");
    }
    let gone = f
        .content
        .get_manifest(&app, &Reference::Digest(old.clone()))
        .await;
    assert!(matches!(gone, Err(ContentError::ManifestUnknown(_))));
    let referrers = f.content.referrers(&app, &index, None).await.unwrap();
    assert_eq!(referrers.len(), 1, "the signature is still a referrer");
    // The tag's history no longer names the deleted manifest.
    let tag: Tag = "v1".parse().unwrap();
    let history = f.dir.path().join(
        layout::tag_index_link(&app, &tag, &old)
            .trim_start_matches('/')
            .trim_end_matches("/link"),
    );
    assert!(!history.exists());
}

#[tokio::test]
async fn a_push_relying_on_an_old_unreferenced_blob_keeps_it() {
    let f = fixture();
    let app = repo("app");
    let base = f.blob(&app, b"base layer").await;
    f.age_everything(2 * HOUR);
    // A client found the base layer there (HEAD) and pushes a manifest using it: the push
    // records the use. Even with the manifest gone again (as if the collector had read the
    // repository before the push), the sweep keeps the blob for the grace window.
    let image = f.image(&app, &[&base], None).await;
    let used = f
        .dir
        .path()
        .join(layout::blob_last_used(&base).trim_start_matches('/'));
    assert!(used.exists(), "the use was recorded");
    f.content
        .delete_manifest(&app, &Reference::Digest(image))
        .await
        .unwrap();
    let report = f.gc(HOUR, false).await;
    assert!(f.stored(&base), "{report:?}");
    assert!(!report.blobs_deleted.contains(&base));
    // Once the record is older than the window, the blob goes.
    f.age_everything(2 * HOUR);
    let report = f.gc(HOUR, false).await;
    assert!(report.blobs_deleted.contains(&base), "{report:?}");
    assert!(!f.stored(&base));
}

#[tokio::test]
async fn a_push_after_its_blob_was_collected_is_refused() {
    let f = fixture();
    let app = repo("app");
    let base = f.blob(&app, b"base layer").await;
    f.age_everything(2 * HOUR);
    let report = f.gc(HOUR, false).await;
    assert_eq!(report.blobs_deleted, vec![base.clone()]);
    let config = f.blob(&app, b"{}").await;
    let json = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{base}","size":1}}]}}"#
    );
    let err = f
        .content
        .put_manifest(
            &app,
            &Reference::Tag("v1".parse().unwrap()),
            &[],
            Bytes::from(json),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ContentError::ManifestBlobUnknown(d) if d == base));
}
