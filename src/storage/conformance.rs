//! The driver conformance suite, as in distribution's `testsuites`: named behaviour tests
//! that every driver must pass. [`driver_conformance!`](crate::driver_conformance) expands to
//! one `#[tokio::test]` per case for a driver expression, so the unit tests run it for the
//! filesystem and memory drivers and the S3 integration tests run it against MinIO. Each test
//! gets a fresh driver (an empty root).

use bytes::Bytes;
use futures::TryStreamExt;

use super::{Driver, Entry, FileWriter};

/// Names every case once: `driver_conformance!` and the list below expand from it.
#[macro_export]
#[doc(hidden)]
macro_rules! driver_conformance {
    ($make:expr) => {
        $crate::driver_conformance!(@cases $make;
            missing_objects_are_not_found,
            put_replaces_atomically_and_creates_parents,
            stat_reports_size_and_kind,
            writers_append_across_resumes,
            unclosed_writes_are_not_part_of_the_object,
            large_objects_survive_resumes_at_odd_sizes,
            cancel_leaves_the_object_as_found,
            flushed_bytes_are_readable_while_writing,
            readers_honour_offset_and_length,
            list_gives_sorted_direct_children_and_kinds,
            rename_replaces_the_destination,
            delete_removes_trees_and_unfinished_writers,
            hostile_paths_are_refused,
            put_if_absent_creates_once,
            walk_finds_every_object_below,
            delete_objects_removes_exactly_those,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let under_test = $make;
                let driver = $crate::storage::conformance::UnderTest::driver(&under_test);
                $crate::storage::conformance::$case(driver).await;
            }
        )*
    };
}

/// What a conformance test runs against: a driver, or a fixture that owns one (and its temp
/// dir or bucket).
pub trait UnderTest {
    fn driver(&self) -> &dyn Driver;
}

impl<T: Driver> UnderTest for T {
    fn driver(&self) -> &dyn Driver {
        self
    }
}

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

/// Bytes that differ at every offset, so a misplaced part shows.
fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 16) as u8)
        .collect::<Vec<u8>>()
        .into()
}

async fn write_all(w: &mut Box<dyn FileWriter>, data: &Bytes, piece: usize) {
    for start in (0..data.len()).step_by(piece.max(1)) {
        w.write(data.slice(start..(start + piece).min(data.len())))
            .await
            .unwrap();
    }
}

fn names(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.name.as_str()).collect()
}

pub async fn missing_objects_are_not_found(d: &dyn Driver) {
    assert!(
        d.get_content("/a/missing")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(d.stat("/a/missing").await.unwrap_err().is_not_found());
    assert!(d.list("/nothing").await.unwrap_err().is_not_found());
    assert!(d.delete("/nothing").await.unwrap_err().is_not_found());
    let reader = d.reader("/nothing", 0, None).await;
    assert!(reader.err().unwrap().is_not_found());
    assert!(d.rename("/nothing", "/x").await.unwrap_err().is_not_found());
}

pub async fn put_replaces_atomically_and_creates_parents(d: &dyn Driver) {
    d.put_content("/a/b/c/link", Bytes::from_static(b"one"))
        .await
        .unwrap();
    d.put_content("/a/b/c/link", Bytes::from_static(b"two"))
        .await
        .unwrap();
    assert_eq!(&d.get_content("/a/b/c/link").await.unwrap()[..], b"two");
    d.put_content("/empty", Bytes::new()).await.unwrap();
    assert_eq!(d.get_content("/empty").await.unwrap().len(), 0);
}

pub async fn stat_reports_size_and_kind(d: &dyn Driver) {
    d.put_content("/a/b/c/link", Bytes::from_static(b"two"))
        .await
        .unwrap();
    let st = d.stat("/a/b/c/link").await.unwrap();
    assert_eq!((st.size, st.is_dir), (3, false));
    assert!(d.stat("/a/b").await.unwrap().is_dir);
    assert!(d.stat("/a/b/c").await.unwrap().is_dir);
    assert!(d.stat("/a/b/c/li").await.unwrap_err().is_not_found());
    // An object's own metadata: a directory is not one.
    assert_eq!(d.stat_object("/a/b/c/link").await.unwrap().size, 3);
    assert!(d.stat_object("/a/b").await.unwrap_err().is_not_found());
    assert!(d.stat_object("/a/b/c/li").await.unwrap_err().is_not_found());
}

pub async fn writers_append_across_resumes(d: &dyn Driver) {
    let mut w = d.writer("/up/data", None).await.unwrap();
    w.write(Bytes::from_static(b"hello ")).await.unwrap();
    assert_eq!(w.size(), 6);
    let resume = w.close().await.unwrap();
    assert_eq!(resume.size, 6);
    let mut w = d.writer("/up/data", Some(&resume)).await.unwrap();
    assert_eq!(w.size(), 6);
    w.write(Bytes::from_static(b"world")).await.unwrap();
    let resume = w.close().await.unwrap();
    // An empty writer in between changes nothing.
    let w = d.writer("/up/data", Some(&resume)).await.unwrap();
    let resume = w.close().await.unwrap();
    assert_eq!(resume.size, 11);
    let w = d.writer("/up/data", Some(&resume)).await.unwrap();
    w.commit().await.unwrap();
    assert_eq!(read_all(d, "/up/data", 0, None).await, b"hello world");
    assert_eq!(d.stat("/up/data").await.unwrap().size, 11);
    // A fresh writer starts an empty object.
    let w = d.writer("/up/empty", None).await.unwrap();
    w.commit().await.unwrap();
    assert_eq!(read_all(d, "/up/empty", 0, None).await, b"");
}

pub async fn unclosed_writes_are_not_part_of_the_object(d: &dyn Driver) {
    let mut w = d.writer("/up/data", None).await.unwrap();
    w.write(Bytes::from_static(b"kept")).await.unwrap();
    let resume = w.close().await.unwrap();
    // A writer that dies (a crashed process) after writing, without closing.
    let mut lost = d.writer("/up/data", Some(&resume)).await.unwrap();
    lost.write(pattern(6 << 20, 1)).await.unwrap();
    lost.flush().await.unwrap();
    drop(lost);
    let mut w = d.writer("/up/data", Some(&resume)).await.unwrap();
    assert_eq!(w.size(), 4);
    w.write(Bytes::from_static(b" and more")).await.unwrap();
    w.commit().await.unwrap();
    assert_eq!(read_all(d, "/up/data", 0, None).await, b"kept and more");
}

pub async fn large_objects_survive_resumes_at_odd_sizes(d: &dyn Driver) {
    // Pieces around an object store's 5 MiB part minimum, each written by its own writer.
    let sizes = [1, 3 << 20, (5 << 20) + 7, 4 << 20, 11 << 20, 333];
    let mut expected = Vec::new();
    let mut resume = None;
    for (i, size) in sizes.into_iter().enumerate() {
        let data = pattern(size, i as u8);
        let mut w = d.writer("/big/data", resume.as_ref()).await.unwrap();
        write_all(&mut w, &data, 256 << 10).await;
        expected.extend_from_slice(&data);
        assert_eq!(w.size(), expected.len() as u64);
        if i + 1 == sizes.len() {
            w.commit().await.unwrap();
        } else {
            resume = Some(w.close().await.unwrap());
        }
    }
    let all = read_all(d, "/big/data", 0, None).await;
    assert_eq!(all.len(), expected.len());
    assert!(
        all == expected,
        "the object's bytes differ from what was written"
    );
}

pub async fn cancel_leaves_the_object_as_found(d: &dyn Driver) {
    let mut w = d.writer("/up/data", None).await.unwrap();
    w.write(Bytes::from_static(b"hello world")).await.unwrap();
    let resume = w.close().await.unwrap();
    let big = pattern(6 << 20, 3);
    let mut w = d.writer("/up/data", Some(&resume)).await.unwrap();
    w.write(big.clone()).await.unwrap();
    w.write(big).await.unwrap();
    w.cancel().await.unwrap();
    let w = d.writer("/up/data", Some(&resume)).await.unwrap();
    assert_eq!(w.size(), 11);
    w.commit().await.unwrap();
    assert_eq!(read_all(d, "/up/data", 0, None).await, b"hello world");
    // A cancelled fresh writer leaves no readable object behind.
    let mut w = d.writer("/up/gone", None).await.unwrap();
    w.write(Bytes::from_static(b"x")).await.unwrap();
    w.cancel().await.unwrap();
    let left = d.stat("/up/gone").await;
    assert!(left.is_err() || left.unwrap().size == 0);
}

pub async fn flushed_bytes_are_readable_while_writing(d: &dyn Driver) {
    if !d.follows_writes() {
        return;
    }
    let mut w = d.writer("/follow/data", None).await.unwrap();
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
}

pub async fn readers_honour_offset_and_length(d: &dyn Driver) {
    let data = pattern(3 << 20, 9);
    d.put_content("/r/data", data.clone()).await.unwrap();
    assert_eq!(read_all(d, "/r/data", 6, Some(5)).await, data[6..11]);
    assert_eq!(read_all(d, "/r/data", 1 << 20, None).await, data[1 << 20..]);
    let len = data.len() as u64;
    assert_eq!(read_all(d, "/r/data", len, None).await, b"");
    assert_eq!(
        read_all(d, "/r/data", len - 3, Some(100)).await,
        data[data.len() - 3..]
    );
}

pub async fn list_gives_sorted_direct_children_and_kinds(d: &dyn Driver) {
    d.put_content("/l/b/x", Bytes::new()).await.unwrap();
    d.put_content("/l/a", Bytes::new()).await.unwrap();
    d.put_content("/l/c/y/z", Bytes::new()).await.unwrap();
    let entries = d.list("/l").await.unwrap();
    assert_eq!(names(&entries), ["a", "b", "c"]);
    let kinds: Vec<bool> = entries.iter().map(|e| e.is_dir).collect();
    assert_eq!(kinds, [false, true, true]);
    // Sorted by name, not by key: "a/..." sorts after "a-b/..." as a key ('-' < '/').
    d.put_content("/m/a/x", Bytes::new()).await.unwrap();
    d.put_content("/m/a-b/x", Bytes::new()).await.unwrap();
    assert_eq!(names(&d.list("/m").await.unwrap()), ["a", "a-b"]);
    // More children than one page of an object store's listing.
    for i in 0..1100 {
        d.put_content(&format!("/many/{i:05}"), Bytes::new())
            .await
            .unwrap();
    }
    let many = d.list("/many").await.unwrap();
    assert_eq!(many.len(), 1100);
    assert_eq!(many[1099].name, "01099");
}

pub async fn rename_replaces_the_destination(d: &dyn Driver) {
    let data = pattern(6 << 20, 5);
    let mut w = d.writer("/up/data", None).await.unwrap();
    write_all(&mut w, &data, 1 << 20).await;
    w.commit().await.unwrap();
    d.rename("/up/data", "/blobs/x/data").await.unwrap();
    assert!(d.stat("/up/data").await.unwrap_err().is_not_found());
    assert_eq!(read_all(d, "/blobs/x/data", 0, None).await, data);
    d.put_content("/blobs/y", Bytes::from_static(b"old"))
        .await
        .unwrap();
    d.put_content("/z", Bytes::from_static(b"new"))
        .await
        .unwrap();
    d.rename("/z", "/blobs/y").await.unwrap();
    assert_eq!(&d.get_content("/blobs/y").await.unwrap()[..], b"new");
    assert!(d.get_content("/z").await.unwrap_err().is_not_found());
}

pub async fn delete_removes_trees_and_unfinished_writers(d: &dyn Driver) {
    d.put_content("/l/c/y/z", Bytes::new()).await.unwrap();
    d.put_content("/l/a", Bytes::new()).await.unwrap();
    d.put_content("/la", Bytes::from_static(b"sibling"))
        .await
        .unwrap();
    let mut w = d.writer("/l/up/data", None).await.unwrap();
    w.write(pattern(6 << 20, 7)).await.unwrap();
    let resume = w.close().await.unwrap();
    d.delete("/l").await.unwrap();
    assert!(d.stat("/l/c/y/z").await.unwrap_err().is_not_found());
    assert!(d.list("/l").await.unwrap_err().is_not_found());
    // A sibling whose name starts the same stays.
    assert_eq!(&d.get_content("/la").await.unwrap()[..], b"sibling");
    // The unfinished writer's bytes went with the tree.
    let gone = match d.writer("/l/up/data", Some(&resume)).await {
        Ok(w) => w.commit().await.is_err(),
        Err(_) => true,
    };
    assert!(
        gone,
        "a deleted tree's unfinished object can still be completed"
    );
    d.delete("/la").await.unwrap();
    assert!(d.stat("/la").await.unwrap_err().is_not_found());
}

pub async fn hostile_paths_are_refused(d: &dyn Driver) {
    for bad in ["relative", "/a/../b", "/a//b", "/a/./b", "/a/", "/../x"] {
        assert!(d.get_content(bad).await.is_err(), "{bad}");
        assert!(
            d.put_content(bad, Bytes::new()).await.is_err(),
            "{bad} accepted for a write"
        );
    }
}

pub async fn put_if_absent_creates_once(d: &dyn Driver) {
    let attempts = (0..8u8).map(|i| d.put_if_absent("/locks/gc", Bytes::from(vec![b'0' + i])));
    let won: Vec<bool> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    let winner = won.iter().position(|w| *w).unwrap() as u8;
    assert_eq!(
        d.get_content("/locks/gc").await.unwrap()[..],
        [b'0' + winner]
    );
    assert!(!d.put_if_absent("/locks/gc", Bytes::new()).await.unwrap());
    d.delete("/locks/gc").await.unwrap();
    assert!(
        d.put_if_absent("/locks/gc", Bytes::from_static(b"again"))
            .await
            .unwrap()
    );
}

pub async fn walk_finds_every_object_below(d: &dyn Driver) {
    for (path, len) in [
        ("/w/a", 1),
        ("/w/b/c", 2),
        ("/w/b/d/e/f", 3),
        ("/wx/no", 4),
        ("/w2", 5),
    ] {
        d.put_content(path, pattern(len, 0)).await.unwrap();
    }
    let mut found: Vec<(String, u64)> = d
        .walk("/w")
        .map_ok(|(p, info)| {
            assert!(!info.is_dir);
            (p, info.size)
        })
        .try_collect()
        .await
        .unwrap();
    found.sort();
    let want = [("/w/a", 1), ("/w/b/c", 2), ("/w/b/d/e/f", 3)];
    let want: Vec<(String, u64)> = want.iter().map(|(p, n)| (p.to_string(), *n)).collect();
    assert_eq!(found, want);
    let none: Vec<_> = d.walk("/missing").try_collect().await.unwrap();
    assert!(none.is_empty());
}

pub async fn delete_objects_removes_exactly_those(d: &dyn Driver) {
    let paths: Vec<String> = (0..1200).map(|i| format!("/many/{i:05}/data")).collect();
    for p in &paths {
        d.put_content(p, Bytes::from_static(b"x")).await.unwrap();
    }
    d.put_content("/many/keep", Bytes::new()).await.unwrap();
    let mut gone: Vec<String> = paths.clone();
    gone.push("/many/never-there".into());
    d.delete_objects(gone).await.unwrap();
    let left: Vec<(String, super::FileInfo)> = d.walk("/many").try_collect().await.unwrap();
    let left: Vec<&str> = left.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(left, ["/many/keep"]);
    d.delete_objects(Vec::new()).await.unwrap();
}
