//! File watching for live reloads of files the server reads at startup (TLS certificates and
//! keys, client CAs, the htpasswd file). Anyone holding paths may create a [`Watcher`] and await
//! [`Watcher::changed`] in a reload task.
//!
//! The parent directory of every file is watched (inotify through `notify`), not the file
//! itself, because files are usually replaced rather than edited: an atomic replace writes a
//! temporary file and renames it over the old one, and a Kubernetes Secret volume swaps its
//! `..data` symlink to a new timestamped directory. Neither produces an event on the old inode.
//!
//! After a burst of directory events settles, each file's identity is compared with what it was
//! (device, inode, size, modification and change times, following symlinks). Only a difference,
//! or an event naming a watched file, counts as a change, so unrelated files in the same
//! directory do not trigger a reload. A file that is missing for a moment (mid-replace) is also
//! a difference; the reload that follows fails, keeps the old state, and the next event (when
//! the file is back) triggers again. Limit: a symlink target in a directory other than the
//! link's own is not watched, so an in-place edit of such a target is not seen (replacing the
//! link is).

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

/// How long the directory must stay quiet before a burst of events counts as one change.
const DEBOUNCE: Duration = Duration::from_millis(250);
/// A continuous stream of events still yields a change after this long.
const MAX_DELAY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {path}: it has no parent directory")]
    NoParent { path: PathBuf },
    #[error("cannot resolve {path}: {source}")]
    Resolve {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot watch directory {dir} (for {file}): {source}")]
    Watch {
        dir: PathBuf,
        file: PathBuf,
        source: notify::Error,
    },
    #[error("cannot start the file watcher: {0}")]
    Start(notify::Error),
}

/// Watches a set of files for replacement or modification. Dropping it stops the watching.
pub struct Watcher {
    /// Kept alive for as long as events are wanted; it owns the inotify instance.
    _inner: notify::RecommendedWatcher,
    events: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    files: Vec<PathBuf>,
    seen: Vec<Option<FileIdentity>>,
}

/// What identifies one version of a file's content, as far as metadata can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn identity(path: &Path) -> Option<FileIdentity> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileIdentity {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

impl Watcher {
    /// Watches `paths` (files). Their parent directories are watched, so atomic replaces
    /// (write temp + rename) and Kubernetes Secret volume symlink swaps (`..data`) are seen.
    pub fn new(paths: &[PathBuf]) -> Result<Watcher, WatchError> {
        let (tx, events) = mpsc::unbounded_channel();
        let mut inner = notify::recommended_watcher(move |event| {
            // The receiver is gone only when the Watcher is dropped; nothing to do then.
            let _ = tx.send(event);
        })
        .map_err(WatchError::Start)?;
        let mut files = Vec::with_capacity(paths.len());
        let mut dirs = BTreeSet::new();
        for path in paths {
            let file = std::path::absolute(path).map_err(|source| WatchError::Resolve {
                path: path.clone(),
                source,
            })?;
            let dir = file
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .ok_or_else(|| WatchError::NoParent { path: path.clone() })?
                .to_path_buf();
            if dirs.insert(dir.clone()) {
                inner
                    .watch(&dir, RecursiveMode::NonRecursive)
                    .map_err(|source| WatchError::Watch {
                        dir,
                        file: file.clone(),
                        source,
                    })?;
            }
            files.push(file);
        }
        let seen = files.iter().map(|f| identity(f)).collect();
        Ok(Watcher {
            _inner: inner,
            events,
            files,
            seen,
        })
    }

    /// Resolves after the next change to a watched file, debounced (~250 ms) so a burst of
    /// events gives one reload.
    pub async fn changed(&mut self) {
        loop {
            let Some(first) = self.events.recv().await else {
                // Cannot happen while `_inner` lives; never report a change then.
                return std::future::pending().await;
            };
            if is_read(&first) {
                continue;
            }
            let mut named = self.names_watched_file(&first);
            let deadline = tokio::time::Instant::now() + MAX_DELAY;
            loop {
                let quiet = (tokio::time::Instant::now() + DEBOUNCE).min(deadline);
                match tokio::time::timeout_at(quiet, self.events.recv()).await {
                    Ok(Some(event)) if is_read(&event) => {}
                    Ok(Some(event)) => named |= self.names_watched_file(&event),
                    Ok(None) | Err(_) => break,
                }
            }
            let now: Vec<_> = self.files.iter().map(|f| identity(f)).collect();
            let differs = now != self.seen;
            self.seen = now;
            if differs || named {
                return;
            }
        }
    }

    /// True when the event concerns one of the watched paths (or is an error from the
    /// watcher, in which case a reload is the safe answer).
    fn names_watched_file(&self, event: &notify::Result<notify::Event>) -> bool {
        match event {
            Ok(event) => event
                .paths
                .iter()
                .any(|p| self.files.iter().any(|f| f == p)),
            Err(e) => {
                tracing::warn!(error = %e, "file watcher error; reloading to be safe");
                true
            }
        }
    }
}

/// An open, or a close after reading: the reload itself causes these, so they are not a
/// change (a close after writing is).
fn is_read(event: &notify::Result<notify::Event>) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match event {
        Ok(event) => match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => false,
            EventKind::Access(_) => true,
            _ => false,
        },
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    const WAIT: Duration = Duration::from_secs(10);

    async fn changes_within(watcher: &mut Watcher, limit: Duration) -> bool {
        tokio::time::timeout(limit, watcher.changed()).await.is_ok()
    }

    #[tokio::test]
    async fn sees_in_place_writes_and_atomic_renames() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tls.crt");
        fs::write(&file, "one").unwrap();
        let mut watcher = Watcher::new(std::slice::from_ref(&file)).unwrap();

        fs::write(&file, "two, longer").unwrap();
        assert!(changes_within(&mut watcher, WAIT).await, "in-place write");

        let tmp = dir.path().join(".tls.crt.tmp");
        fs::write(&tmp, "three").unwrap();
        fs::rename(&tmp, &file).unwrap();
        assert!(changes_within(&mut watcher, WAIT).await, "atomic rename");
    }

    #[tokio::test]
    async fn a_burst_of_writes_is_one_change() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        fs::write(&file, "").unwrap();
        let mut watcher = Watcher::new(std::slice::from_ref(&file)).unwrap();
        for i in 0..20 {
            fs::write(&file, format!("user{i}:x\n")).unwrap();
        }
        assert!(changes_within(&mut watcher, WAIT).await);
        assert!(
            !changes_within(&mut watcher, Duration::from_millis(600)).await,
            "the burst was reported twice"
        );
    }

    /// The reload that follows a change reads the file; that must not be a change again.
    #[tokio::test]
    async fn reading_a_watched_file_is_not_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        fs::write(&file, "a:b\n").unwrap();
        let mut watcher = Watcher::new(std::slice::from_ref(&file)).unwrap();
        fs::write(&file, "a:c\n").unwrap();
        assert!(changes_within(&mut watcher, WAIT).await);
        for _ in 0..3 {
            assert_eq!(fs::read_to_string(&file).unwrap(), "a:c\n");
        }
        assert!(!changes_within(&mut watcher, Duration::from_millis(800)).await);
    }

    #[tokio::test]
    async fn unrelated_files_in_the_directory_do_not_trigger() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tls.key");
        fs::write(&file, "key").unwrap();
        let mut watcher = Watcher::new(std::slice::from_ref(&file)).unwrap();
        fs::write(dir.path().join("other"), "noise").unwrap();
        fs::remove_file(dir.path().join("other")).unwrap();
        assert!(!changes_within(&mut watcher, Duration::from_millis(800)).await);
        fs::write(&file, "new key").unwrap();
        assert!(changes_within(&mut watcher, WAIT).await);
    }

    /// The layout kubelet writes for a Secret volume, and its update: a new timestamped
    /// directory, a `..data_tmp` symlink to it renamed over `..data`.
    #[tokio::test]
    async fn sees_a_kubernetes_secret_volume_swap() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("..2024_01")).unwrap();
        fs::write(root.join("..2024_01/tls.crt"), "old").unwrap();
        symlink("..2024_01", root.join("..data")).unwrap();
        symlink("..data/tls.crt", root.join("tls.crt")).unwrap();
        let mut watcher = Watcher::new(&[root.join("tls.crt")]).unwrap();

        fs::create_dir(root.join("..2024_02")).unwrap();
        fs::write(root.join("..2024_02/tls.crt"), "new").unwrap();
        symlink("..2024_02", root.join("..data_tmp")).unwrap();
        fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        fs::remove_dir_all(root.join("..2024_01")).unwrap();
        assert!(changes_within(&mut watcher, WAIT).await);
        assert_eq!(fs::read_to_string(root.join("tls.crt")).unwrap(), "new");
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let err = Watcher::new(&[PathBuf::from("/nonexistent-dockyard/dir/file")]);
        assert!(
            matches!(err, Err(WatchError::Watch { .. })),
            "{:?}",
            err.err()
        );
    }
}
