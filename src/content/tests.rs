//! Content-layer tests over the filesystem driver: resuming uploads across a restart,
//! broken bodies, and what a failed upload leaves on disk.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream;

use super::{Content, ContentError, ContentOptions};
use crate::oci::{Algorithm, Digest, RepoName};
use crate::storage::{fs::FsDriver, layout};

fn content(dir: &std::path::Path) -> Content {
    Content::new(Arc::new(FsDriver::new(dir)), ContentOptions::default())
}

fn body(chunks: &[&'static [u8]]) -> impl super::BodyStream {
    stream::iter(
        chunks
            .iter()
            .map(|c| Ok(Bytes::from_static(c)))
            .collect::<Vec<_>>(),
    )
}

#[tokio::test]
async fn upload_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let name: RepoName = "a/b".parse().unwrap();
    let first = content(dir.path());
    let id = first.start_upload(&name).await.unwrap();
    assert_eq!(
        first
            .append_upload(&name, &id, Some(0), body(&[b"hello ", b"wor"]))
            .await
            .unwrap(),
        9
    );
    drop(first);

    // A new process has no hash state: it rebuilds it from the data on disk.
    let second = content(dir.path());
    assert_eq!(second.upload_offset(&name, &id).await.unwrap(), 9);
    let err = second
        .append_upload(&name, &id, Some(3), body(&[b"x"]))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ContentError::ChunkOutOfOrder {
            given: 3,
            expected: 9
        }
    ));
    let digest = Digest::of(Algorithm::Sha256, b"hello world");
    second
        .complete_upload(&name, &id, &digest, None, body(&[b"ld"]))
        .await
        .unwrap();
    assert_eq!(second.blob_size(&name, &digest).await.unwrap(), 11);
    let stored = std::fs::read(
        dir.path()
            .join(layout::blob_data(&digest).trim_start_matches('/')),
    )
    .unwrap();
    assert_eq!(stored, b"hello world");
    assert!(
        !dir.path()
            .join(layout::upload_dir(&name, &id).trim_start_matches('/'))
            .exists()
    );
}

#[tokio::test]
async fn broken_body_keeps_received_bytes_for_resume() {
    let dir = tempfile::tempdir().unwrap();
    let name: RepoName = "r".parse().unwrap();
    let c = content(dir.path());
    let id = c.start_upload(&name).await.unwrap();
    let broken = stream::iter(vec![
        Ok(Bytes::from_static(b"abc")),
        Err(io::Error::other("connection reset")),
    ]);
    let err = c.append_upload(&name, &id, None, broken).await.unwrap_err();
    assert!(matches!(err, ContentError::Body(_)));
    // The client asks where to resume and continues from there.
    assert_eq!(c.upload_offset(&name, &id).await.unwrap(), 3);
    let digest = Digest::of(Algorithm::Sha256, b"abcdef");
    c.append_upload(&name, &id, Some(3), body(&[b"def"]))
        .await
        .unwrap();
    c.complete_upload(&name, &id, &digest, None, body(&[]))
        .await
        .unwrap();
    assert_eq!(c.blob_size(&name, &digest).await.unwrap(), 6);
}

#[tokio::test]
async fn failed_upload_leaves_no_blob_and_sha512_rehashes() {
    let dir = tempfile::tempdir().unwrap();
    let name: RepoName = "r".parse().unwrap();
    let c = content(dir.path());
    let id = c.start_upload(&name).await.unwrap();
    let wrong = Digest::of(Algorithm::Sha256, b"something else");
    assert!(
        c.complete_upload(&name, &id, &wrong, None, body(&[b"payload"]))
            .await
            .is_err()
    );
    let blobs = dir.path().join("docker/registry/v2/blobs");
    assert!(!blobs.exists() || std::fs::read_dir(&blobs).unwrap().next().is_none());
    assert!(matches!(
        c.upload_offset(&name, &id).await,
        Err(ContentError::UploadUnknown(_))
    ));

    // A chunked upload completed with a sha512 digest is re-hashed with sha512.
    let id = c.start_upload(&name).await.unwrap();
    c.append_upload(&name, &id, None, body(&[b"payload"]))
        .await
        .unwrap();
    let d512 = Digest::of(Algorithm::Sha512, b"payload");
    c.complete_upload(&name, &id, &d512, None, body(&[]))
        .await
        .unwrap();
    assert_eq!(c.blob_size(&name, &d512).await.unwrap(), 7);
}
