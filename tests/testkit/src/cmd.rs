//! Running external client programs (skopeo, podman, ctr, helm, crane, oras, ...) from tests:
//! every run has a deadline, and a failure panics with the full command line, exit status,
//! stdout and stderr so the test output alone explains what went wrong.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long one client command may run before it is killed and the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// The outcome of one finished command.
#[derive(Debug)]
pub struct Outcome {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn describe(&self) -> String {
        format!(
            "command: {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// Where a client tool lives: `$DOCKYARD_TOOLS/bin/<name>`, then `<repo>/.tools/bin/<name>`
/// (both filled by `tests/setup.sh`), then `PATH`. Panics when it is nowhere.
pub fn tool(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| panic!("client tool `{name}` not found: run tests/setup.sh"))
}

/// [`tool`], or None when the tool is nowhere (for tests that may skip without it).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("DOCKYARD_TOOLS") {
        candidates.push(PathBuf::from(dir).join("bin").join(name));
    }
    candidates.push(crate::repo().join(".tools/bin").join(name));
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join(name)));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// A command for the tool `name` (resolved with [`tool`]) with these arguments.
pub fn cmd<I, S>(name: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(tool(name));
    command.args(args);
    command
}

/// Runs `command` to completion (killing it after [`COMMAND_TIMEOUT`]).
pub fn run_capture(command: &mut Command) -> Outcome {
    let line = format!("{command:?}");
    eprintln!("$ {line}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {line}: {e}"));
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "timed out after {COMMAND_TIMEOUT:?}: {line}\n--- stderr ---\n{}",
                stderr.join().unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        command: line,
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Runs `command`, asserts it exited 0 and returns its stdout.
pub fn run(command: &mut Command) -> String {
    let outcome = run_capture(command);
    assert!(
        outcome.status.success(),
        "command failed\n{}",
        outcome.describe()
    );
    outcome.stdout
}

/// Runs `command`, asserts it exited non-zero and returns the whole outcome.
pub fn run_fail(command: &mut Command) -> Outcome {
    let outcome = run_capture(command);
    assert!(
        !outcome.status.success(),
        "command unexpectedly succeeded\n{}",
        outcome.describe()
    );
    outcome
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
