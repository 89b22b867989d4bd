//! podman and buildah with private storage: every command gets the vfs driver and its own
//! root, runroot and tmpdir under a test's temp dir, so tests never touch the host's images.

use std::path::Path;
use std::process::Command;

use super::cmd::cmd;

/// A `podman` (or `buildah`) command whose storage lives entirely under `root`.
pub fn isolated(program: &str, root: &Path) -> Command {
    let mut command = cmd(program, ["--storage-driver", "vfs"]);
    command
        .arg("--root")
        .arg(root.join("root"))
        .arg("--runroot")
        .arg(root.join("run"));
    if program == "podman" {
        command.arg("--tmpdir").arg(root.join("tmp")).args([
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ]);
    }
    command
}
