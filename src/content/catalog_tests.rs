//! The name index kept current over a shared filesystem: two `Content`s on one directory
//! stand for two replicas (or Dockyard and another registry writing the same storage).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{Content, ContentOptions};
use crate::oci::{Reference, RepoName};
use crate::storage::fs::FsDriver;

fn replica(dir: &std::path::Path) -> Content {
    Content::new(
        Arc::new(FsDriver::new(dir)),
        ContentOptions {
            delete_enabled: true,
            ..ContentOptions::default()
        },
    )
}

/// An empty image index: a manifest that references nothing, so it needs no blobs.
fn empty_index(salt: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"annotations":{{"salt":"{salt}"}}}}"#
    ))
}

async fn push(c: &Content, name: &str, tag: &str) -> crate::oci::Digest {
    let name: RepoName = name.parse().unwrap();
    let reference = Reference::Tag(tag.parse().unwrap());
    c.put_manifest(&name, &reference, &[], empty_index(tag), None)
        .await
        .unwrap()
        .digest
}

fn listed(c: &Content) -> Vec<String> {
    c.names().page(None, 1000, |_| true).0
}

#[tokio::test]
async fn pushes_show_at_once_here_and_after_a_refresh_on_other_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (replica(dir.path()), replica(dir.path()));
    a.load_names().await.unwrap();
    b.load_names().await.unwrap();
    assert!(a.names().is_ready());

    push(&a, "team/app", "v1").await;
    push(&a, "deep/a/b/c", "v1").await;
    assert_eq!(listed(&a), vec!["deep/a/b/c", "team/app"]);
    assert!(
        dir.path().join("dockyard/names/team!app").is_file(),
        "the marker other replicas list"
    );
    assert!(listed(&b).is_empty(), "b has not refreshed yet");
    assert_eq!(b.refresh_names().await.unwrap(), (2, 0));
    assert_eq!(listed(&b), listed(&a));

    // A repository whose manifests are all deleted leaves b's index after a refresh.
    let name: RepoName = "team/app".parse().unwrap();
    let digest = push(&b, "team/app", "v2").await;
    b.delete_manifest(&name, &Reference::Digest(digest))
        .await
        .unwrap();
    assert_eq!(
        listed(&b),
        vec!["deep/a/b/c", "team/app"],
        "v1 is still there"
    );
    let first = a
        .resolve(&name, &Reference::Tag("v1".parse().unwrap()))
        .await
        .unwrap();
    // The filesystem keeps the empty `_manifests` directory, and distribution lists such a
    // repository too: remove the tree as an operator would.
    a.delete_manifest(&name, &Reference::Digest(first))
        .await
        .unwrap();
    std::fs::remove_dir_all(dir.path().join("docker/registry/v2/repositories/team/app")).unwrap();
    a.forget_repository_if_gone(&name).await.unwrap();
    assert_eq!(listed(&a), vec!["deep/a/b/c"]);
    assert!(!dir.path().join("dockyard/names/team!app").exists());
    assert_eq!(b.refresh_names().await.unwrap(), (0, 1));
    assert_eq!(listed(&b), vec!["deep/a/b/c"]);
    assert_eq!(
        a.repositories().await.unwrap(),
        listed(&b),
        "the index agrees with a walk"
    );
}

#[tokio::test]
async fn a_rescan_finds_what_other_software_wrote_and_drops_stale_markers() {
    let dir = tempfile::tempdir().unwrap();
    let a = replica(dir.path());
    // Written before any Dockyard ran (distribution's layout, no markers).
    let old = replica(dir.path());
    push(&old, "legacy/one", "v1").await;
    push(&old, "legacy/two", "v1").await;
    std::fs::remove_dir_all(dir.path().join("dockyard")).unwrap();

    assert!(
        a.load_names().await.unwrap(),
        "no markers yet: the load is a scan"
    );
    assert_eq!(listed(&a), vec!["legacy/one", "legacy/two"]);
    assert!(dir.path().join("dockyard/names/legacy!one").is_file());
    assert!(dir.path().join("dockyard/names.complete").is_file());

    // Another registry writes a repository and removes one, behind Dockyard's back.
    push(&old, "legacy/three", "v1").await;
    std::fs::remove_file(dir.path().join("dockyard/names/legacy!three")).unwrap();
    std::fs::remove_dir_all(
        dir.path()
            .join("docker/registry/v2/repositories/legacy/two"),
    )
    .unwrap();
    // A refresh only trusts the markers...
    a.refresh_names().await.unwrap();
    assert_eq!(listed(&a), vec!["legacy/one", "legacy/two"]);
    // ...a rescan sees the tree, and fixes the markers for everyone.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(a.rescan_names().await.unwrap(), (1, 1));
    assert_eq!(listed(&a), vec!["legacy/one", "legacy/three"]);
    assert!(dir.path().join("dockyard/names/legacy!three").is_file());
    assert!(!dir.path().join("dockyard/names/legacy!two").exists());

    // A later start trusts the markers the scan wrote.
    let b = replica(dir.path());
    assert!(!b.load_names().await.unwrap(), "loaded from markers");
    assert_eq!(listed(&b), listed(&a));
}

#[tokio::test]
async fn a_read_only_registry_scans_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    push(&replica(dir.path()), "ro/app", "v1").await;
    std::fs::remove_dir_all(dir.path().join("dockyard")).unwrap();
    let ro = Content::new(
        Arc::new(FsDriver::new(dir.path())),
        ContentOptions {
            read_only: true,
            ..ContentOptions::default()
        },
    );
    assert!(ro.load_names().await.unwrap());
    assert_eq!(listed(&ro), vec!["ro/app"]);
    assert!(!dir.path().join("dockyard").exists(), "nothing written");
}

#[tokio::test]
async fn the_background_task_loads_refreshes_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (replica(dir.path()), replica(dir.path()));
    push(&a, "first", "v1").await;
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let observed = seen.clone();
    let task = tokio::spawn(b.clone().maintain_names(
        Duration::from_millis(50),
        Duration::from_secs(3600),
        move |index| observed.store(index.len(), std::sync::atomic::Ordering::SeqCst),
    ));
    tokio::time::timeout(Duration::from_secs(5), b.names().wait_ready())
        .await
        .unwrap();
    assert_eq!(listed(&b), vec!["first"]);
    push(&a, "second", "v1").await;
    tokio::time::timeout(Duration::from_secs(5), async {
        while listed(&b).len() < 2 || seen.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("b learns of a's push within a refresh");
    task.abort();
}

#[tokio::test]
async fn a_repository_emptied_on_one_replica_and_pushed_again_on_another_stays_listed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (replica(dir.path()), replica(dir.path()));
    a.load_names().await.unwrap();
    push(&a, "again/app", "v1").await;
    b.load_names().await.unwrap();
    assert_eq!(listed(&b), vec!["again/app"]);
    // A empties it (on an object store the repository's keys are gone; here, its tree).
    let name: RepoName = "again/app".parse().unwrap();
    std::fs::remove_dir_all(dir.path().join("docker/registry/v2/repositories/again")).unwrap();
    a.forget_repository_if_gone(&name).await.unwrap();
    assert!(!dir.path().join("dockyard/names/again!app").exists());
    // B, which still lists it, takes a push before its refresh: no marker is written then.
    push(&b, "again/app", "v2").await;
    assert_eq!(b.refresh_names().await.unwrap(), (0, 0), "B keeps it");
    assert_eq!(listed(&b), vec!["again/app"]);
    assert!(
        dir.path().join("dockyard/names/again!app").is_file(),
        "and writes its marker again"
    );
    assert_eq!(a.refresh_names().await.unwrap(), (1, 0));
    assert_eq!(listed(&a), vec!["again/app"]);
}

#[tokio::test]
async fn garbage_collection_that_empties_a_repository_on_an_object_store_drops_its_name() {
    // The memory driver has an object store's directories: gone with their last object.
    let c = Content::new(
        Arc::new(crate::storage::memory::MemoryDriver::new()),
        ContentOptions::default(),
    );
    c.load_names().await.unwrap();
    push(&c, "kept/app", "v1").await;
    let name: RepoName = "gone/app".parse().unwrap();
    c.put_manifest(
        &name,
        &Reference::Digest(crate::oci::Digest::of(
            crate::oci::Algorithm::Sha256,
            &empty_index("untagged"),
        )),
        &[],
        empty_index("untagged"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(listed(&c), vec!["gone/app", "kept/app"]);
    let report = c
        .collect_garbage(&super::GcOptions {
            dry_run: false,
            delete_untagged: true,
            grace: Duration::ZERO,
        })
        .await
        .unwrap();
    assert_eq!(report.manifests_deleted.len(), 1);
    assert_eq!(listed(&c), vec!["kept/app"]);
    assert_eq!(
        c.repositories().await.unwrap(),
        listed(&c),
        "the index agrees with a walk"
    );
}
