//! Content-layer tests over the filesystem driver: resuming uploads across a restart,
//! broken bodies, and what a failed upload leaves on disk.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream;

use super::{ChunkRange, Content, ContentError, ContentOptions};
use crate::oci::{Algorithm, Digest, RepoName};
use crate::storage::{fs::FsDriver, layout};

fn content(dir: &std::path::Path) -> Content {
    Content::new(Arc::new(FsDriver::new(dir)), ContentOptions::default())
}

fn range(start: u64, len: u64) -> ChunkRange {
    ChunkRange { start, len }
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
            .append_upload(&name, &id, Some(range(0, 9)), body(&[b"hello ", b"wor"]))
            .await
            .unwrap(),
        9
    );
    drop(first);

    // A new process has no hash state: it rebuilds it from the data on disk.
    let second = content(dir.path());
    assert_eq!(second.upload_offset(&name, &id).await.unwrap(), 9);
    let err = second
        .append_upload(&name, &id, Some(range(3, 1)), body(&[b"x"]))
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
    c.append_upload(&name, &id, Some(range(3, 3)), body(&[b"def"]))
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

#[tokio::test]
async fn a_chunk_longer_or_shorter_than_its_content_range_is_refused_and_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let name: RepoName = "r".parse().unwrap();
    let c = content(dir.path());
    let id = c.start_upload(&name).await.unwrap();
    c.append_upload(&name, &id, Some(range(0, 3)), body(&[b"abc"]))
        .await
        .unwrap();
    // Content-Range 3-7 (5 bytes) with a 10-byte body, then with a 2-byte body.
    let long: &[&'static [u8]] = &[b"0123", b"456789"];
    let short: &[&'static [u8]] = &[b"xy"];
    for chunks in [long, short] {
        let err = c
            .append_upload(&name, &id, Some(range(3, 5)), body(chunks))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ContentError::ChunkLength {
                    declared: 5,
                    offset: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(c.upload_offset(&name, &id).await.unwrap(), 3);
    }
    // The session is intact: the right chunk continues it and the digest matches.
    c.append_upload(&name, &id, Some(range(3, 3)), body(&[b"def"]))
        .await
        .unwrap();
    let digest = Digest::of(Algorithm::Sha256, b"abcdef");
    c.complete_upload(&name, &id, &digest, None, body(&[]))
        .await
        .unwrap();
    assert_eq!(c.blob_size(&name, &digest).await.unwrap(), 6);
}

#[tokio::test]
async fn a_failed_single_request_upload_leaves_no_session() {
    let dir = tempfile::tempdir().unwrap();
    let name: RepoName = "r".parse().unwrap();
    let c = content(dir.path());
    let wrong = Digest::of(Algorithm::Sha256, b"other");
    assert!(
        c.put_blob(&name, &wrong, body(&[b"payload"]))
            .await
            .is_err()
    );
    let broken = stream::iter(vec![
        Ok(Bytes::from_static(b"abc")),
        Err(io::Error::other("connection reset")),
    ]);
    assert!(c.put_blob(&name, &wrong, broken).await.is_err());
    let uploads = dir
        .path()
        .join(layout::uploads_dir(&name).trim_start_matches('/'));
    let left: Vec<_> = std::fs::read_dir(&uploads)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "sessions left behind: {left:?}");
}

#[tokio::test]
async fn a_tag_left_without_its_current_link_is_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let name: RepoName = "r".parse().unwrap();
    let c = content(dir.path());
    let config = Bytes::from_static(br#"{"architecture":"amd64","os":"linux"}"#);
    let cd = Digest::of(Algorithm::Sha256, &config);
    c.put_blob(&name, &cd, stream::iter(vec![Ok(config.clone())]))
        .await
        .unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    let tag: crate::oci::Tag = "good".parse().unwrap();
    let put = c
        .put_manifest(
            &name,
            &crate::oci::Reference::Tag(tag),
            &[],
            Bytes::from(manifest.clone()),
            None,
        )
        .await
        .unwrap();
    // What the old write order left after a kill between its two writes: the index link
    // without the current one.
    let torn: crate::oci::Tag = "torn".parse().unwrap();
    let index = layout::tag_index_link(&name, &torn, &put.digest);
    let index = dir.path().join(index.trim_start_matches('/'));
    std::fs::create_dir_all(index.parent().unwrap()).unwrap();
    std::fs::write(&index, put.digest.to_string()).unwrap();
    let tags: Vec<String> = c
        .tags(&name)
        .await
        .unwrap()
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(tags, ["good"]);
    // The current link is written first: a tag with it but no index entry yet pulls.
    let early: crate::oci::Tag = "early".parse().unwrap();
    c.write_link(&layout::tag_current_link(&name, &early), &put.digest)
        .await
        .unwrap();
    let got = c
        .get_manifest(&name, &crate::oci::Reference::Tag(early))
        .await
        .unwrap();
    assert_eq!(got.bytes, manifest.as_bytes());
    let tags: Vec<String> = c
        .tags(&name)
        .await
        .unwrap()
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(tags, ["early", "good"]);
}
