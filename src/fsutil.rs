//! Small filesystem helpers shared by the storage driver and the node agent: atomic file
//! replacement (temp file in a staging dir, fsync, rename, fsync of the directory) and
//! directory fsync. Blocking; callers on async code run them on blocking threads.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// How [`write_atomic_with`] names and creates its temp file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AtomicOptions<'a> {
    /// The temp file's name is this prefix followed by a UUID.
    pub temp_prefix: &'a str,
    /// Permission bits of the new file (regardless of the umask); None keeps the default.
    pub mode: Option<u32>,
}

/// The storage driver's temp files: `.tmp-<uuid>`, default permissions.
const STORAGE: AtomicOptions<'static> = AtomicOptions {
    temp_prefix: ".tmp-",
    mode: None,
};

/// fsyncs a directory so a rename or create inside it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `content` to a temp file in `staging`, fsyncs it and renames it over `target`.
/// When `staging` is on another filesystem than `target` (a volume mounted below the
/// root), the temp file goes beside `target` instead.
pub(crate) fn write_atomic(staging: &Path, target: &Path, content: &[u8]) -> io::Result<()> {
    write_atomic_with(staging, target, content, STORAGE)
}

/// [`write_atomic`] with the temp file's name prefix and mode chosen by the caller. A reader
/// of `target` sees the old content or the new, never a part; a crash can leave only a temp
/// file behind (named `<temp_prefix><uuid>`), never a partial `target`.
pub(crate) fn write_atomic_with(
    staging: &Path,
    target: &Path,
    content: &[u8],
    options: AtomicOptions<'_>,
) -> io::Result<()> {
    let parent = target
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent"))?;
    fs::create_dir_all(parent)?;
    fs::create_dir_all(staging)?;
    match write_via(staging, target, content, options) {
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            write_via(parent, target, content, options)
        }
        other => other,
    }?;
    sync_dir(parent)
}

fn write_via(
    dir: &Path,
    target: &Path,
    content: &[u8],
    options: AtomicOptions<'_>,
) -> io::Result<()> {
    let tmp = dir.join(format!("{}{}", options.temp_prefix, uuid::Uuid::new_v4()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        if let Some(mode) = options.mode {
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        f.write_all(content)?;
        f.sync_data()?;
        fs::rename(&tmp, target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
