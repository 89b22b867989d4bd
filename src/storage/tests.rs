//! The driver conformance suite: every driver must pass the same behaviour tests.

use bytes::Bytes;
use futures::TryStreamExt;

use super::{Driver, fs::FsDriver, memory::MemoryDriver};

async fn read_all(d: &dyn Driver, path: &str, offset: u64, len: Option<u64>) -> Vec<u8> {
    let chunks: Vec<Bytes> = d
        .reader(path, offset, len)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    chunks.concat()
}

async fn suite(d: &dyn Driver) {
    // Missing objects are NotFound everywhere.
    assert!(
        d.get_content("/a/missing")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(d.stat("/a/missing").await.unwrap_err().is_not_found());
    assert!(d.list("/nothing").await.unwrap_err().is_not_found());
    assert!(d.delete("/nothing").await.unwrap_err().is_not_found());
    assert!(
        d.reader("/nothing", 0, None)
            .await
            .err()
            .unwrap()
            .is_not_found()
    );

    // put/get replaces atomically and creates parents.
    d.put_content("/a/b/c/link", Bytes::from_static(b"one"))
        .await
        .unwrap();
    d.put_content("/a/b/c/link", Bytes::from_static(b"two"))
        .await
        .unwrap();
    assert_eq!(&d.get_content("/a/b/c/link").await.unwrap()[..], b"two");
    let st = d.stat("/a/b/c/link").await.unwrap();
    assert_eq!((st.size, st.is_dir), (3, false));
    assert!(d.stat("/a/b").await.unwrap().is_dir);

    // Writers append across opens; readers honour offset and length.
    let mut w = d.writer("/up/data").await.unwrap();
    w.write(Bytes::from_static(b"hello ")).await.unwrap();
    assert_eq!(w.size(), 6);
    w.commit().await.unwrap();
    let mut w = d.writer("/up/data").await.unwrap();
    assert_eq!(w.size(), 6);
    let big = Bytes::from(vec![7u8; 5 << 20]);
    w.write(Bytes::from_static(b"world")).await.unwrap();
    w.write(big.clone()).await.unwrap();
    w.commit().await.unwrap();
    let all = read_all(d, "/up/data", 0, None).await;
    assert_eq!(all.len(), 11 + big.len());
    assert_eq!(&all[..11], b"hello world");
    assert_eq!(read_all(d, "/up/data", 6, Some(5)).await, b"world");
    assert_eq!(read_all(d, "/up/data", all.len() as u64, None).await, b"");

    // A flush makes written bytes readable before the commit.
    let mut w = d.writer("/follow/data").await.unwrap();
    w.write(Bytes::from_static(b"early")).await.unwrap();
    let readable = w.flush().await.unwrap();
    let readable = if readable < 5 {
        w.flush().await.unwrap()
    } else {
        readable
    };
    assert_eq!(readable, 5);
    assert_eq!(read_all(d, "/follow/data", 0, None).await, b"early");
    w.write(Bytes::from_static(b" late")).await.unwrap();
    w.commit().await.unwrap();
    assert_eq!(read_all(d, "/follow/data", 0, None).await, b"early late");

    // A cancelled writer leaves the object as it was, even after large writes.
    let before = all.len() as u64;
    let mut w = d.writer("/up/data").await.unwrap();
    w.write(big.clone()).await.unwrap();
    w.write(big.clone()).await.unwrap();
    w.cancel().await.unwrap();
    assert_eq!(d.stat("/up/data").await.unwrap().size, before);
    assert_eq!(read_all(d, "/up/data", 0, Some(11)).await, b"hello world");

    // list gives sorted direct children only.
    d.put_content("/l/b/x", Bytes::new()).await.unwrap();
    d.put_content("/l/a", Bytes::new()).await.unwrap();
    d.put_content("/l/c/y/z", Bytes::new()).await.unwrap();
    assert_eq!(d.list("/l").await.unwrap(), ["a", "b", "c"]);
    // Sorted by name, not by key: "a/..." sorts after "a-b/..." as a key ('-' < '/').
    d.put_content("/m/a/x", Bytes::new()).await.unwrap();
    d.put_content("/m/a-b/x", Bytes::new()).await.unwrap();
    assert_eq!(d.list("/m").await.unwrap(), ["a", "a-b"]);

    // rename replaces the destination; delete removes whole trees.
    d.rename("/up/data", "/blobs/x/data").await.unwrap();
    assert!(d.stat("/up/data").await.unwrap_err().is_not_found());
    assert_eq!(
        d.stat("/blobs/x/data").await.unwrap().size,
        all.len() as u64
    );
    d.put_content("/blobs/y", Bytes::from_static(b"old"))
        .await
        .unwrap();
    d.put_content("/z", Bytes::from_static(b"new"))
        .await
        .unwrap();
    d.rename("/z", "/blobs/y").await.unwrap();
    assert_eq!(&d.get_content("/blobs/y").await.unwrap()[..], b"new");
    d.delete("/l").await.unwrap();
    assert!(d.stat("/l/c/y/z").await.unwrap_err().is_not_found());

    // Keys that could escape the root are refused.
    for bad in ["relative", "/a/../b", "/a//b", "/a/./b"] {
        assert!(d.get_content(bad).await.is_err(), "{bad}");
    }
}

#[tokio::test]
async fn filesystem_driver_conforms() {
    let dir = tempfile::tempdir().unwrap();
    suite(&FsDriver::new(dir.path())).await;
    // Nothing temporary is left behind.
    let leftovers: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn stale_temp_files_from_a_crash_are_removed_and_fresh_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join(".dockyard-tmp");
    std::fs::create_dir_all(&staging).unwrap();
    let old = staging.join(".tmp-crashed");
    let fresh = staging.join(".tmp-in-progress");
    std::fs::write(&old, b"half a manifest").unwrap();
    std::fs::write(&fresh, b"being written").unwrap();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let driver = FsDriver::new(dir.path());
    let removed = driver
        .remove_stale_temp_files(std::time::Duration::from_secs(600))
        .unwrap();
    assert_eq!(removed, 1);
    assert!(!old.exists());
    assert!(fresh.exists());
    // A root that never had a write has nothing to clean.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        FsDriver::new(empty.path())
            .remove_stale_temp_files(std::time::Duration::ZERO)
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn memory_driver_conforms() {
    suite(&MemoryDriver::new()).await;
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}
