//! The driver conformance suite: every driver must pass the same behaviour tests.

use super::{fs::FsDriver, memory::MemoryDriver};

/// A filesystem driver on its own temp dir; the dir lives as long as the test process, and
/// every test checks that nothing temporary is left in it.
struct Fs {
    driver: FsDriver,
    dir: tempfile::TempDir,
}

impl super::conformance::UnderTest for Fs {
    fn driver(&self) -> &dyn super::Driver {
        &self.driver
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let leftovers: Vec<_> = walk(self.dir.path())
            .into_iter()
            .filter(|p| p.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

fn fs() -> Fs {
    let dir = tempfile::tempdir().unwrap();
    Fs {
        driver: FsDriver::new(dir.path()),
        dir,
    }
}

mod filesystem {
    use super::*;
    crate::driver_conformance!(fs());
}

mod memory {
    use super::*;
    crate::driver_conformance!(MemoryDriver::new());
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
