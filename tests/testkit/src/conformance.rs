//! Driving the OCI distribution-spec conformance runners that `tests/setup.sh` builds: finding
//! a runner binary, running it against a server in a temp dir, and judging its junit report
//! (failing the test on any failed case, except against distribution 2.8.2, which is not OCI
//! 1.1 conformant and only gets its failures printed).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::cmd::run_capture;
use super::server::{Server, Target};

/// The first of the runner binaries `names` in the tools directory `tests/setup.sh` fills.
pub fn find_runner(names: &[&str]) -> Option<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("DOCKYARD_TOOLS") {
        dirs.push(PathBuf::from(dir).join("bin"));
    }
    dirs.push(crate::repo().join(".tools/bin"));
    dirs.iter()
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|path| path.is_file())
}

/// One test case of a junit report.
#[derive(Debug)]
pub struct Case {
    pub name: String,
    pub failed: bool,
}

/// The `<testcase>` elements of a junit.xml, with whether each holds a failure or error.
pub fn junit_cases(xml: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<testcase ") {
        rest = &rest[start..];
        let open_end = rest.find('>').unwrap_or(rest.len());
        let self_closing = rest[..open_end].ends_with('/');
        let end = if self_closing {
            open_end
        } else {
            rest.find("</testcase>").unwrap_or(rest.len())
        };
        let element = &rest[..end];
        let name = attribute(&rest[..open_end], "name").unwrap_or_default();
        let failed = element.contains("<failure") || element.contains("<error");
        cases.push(Case { name, failed });
        rest = &rest[end..];
    }
    cases
}

fn attribute(tag: &str, key: &str) -> Option<String> {
    let start = tag.find(&format!(" {key}=\""))? + key.len() + 3;
    let len = tag[start..].find('"')?;
    let raw = &tag[start..start + len];
    Some(
        raw.replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// Runs one conformance binary against `server` in `dir`, then judges its junit report.
/// The environment that runs all four workflows against `root_url`, reports into `report_dir`.
pub fn workflow_env(root_url: &str, report_dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("OCI_ROOT_URL", root_url.to_string()),
        ("OCI_NAMESPACE", "conformance/repo1".to_string()),
        ("OCI_CROSSMOUNT_NAMESPACE", "conformance/repo2".to_string()),
        ("OCI_TEST_PULL", "1".to_string()),
        ("OCI_TEST_PUSH", "1".to_string()),
        ("OCI_TEST_CONTENT_DISCOVERY", "1".to_string()),
        ("OCI_TEST_CONTENT_MANAGEMENT", "1".to_string()),
        ("OCI_HIDE_SKIPPED_WORKFLOWS", "0".to_string()),
        // Mounting without `from` falls back to an upload (202); let the suite check that.
        ("OCI_AUTOMATIC_CROSSMOUNT", "0".to_string()),
        ("OCI_REPORT_DIR", report_dir.display().to_string()),
    ]
}

/// The main-branch runner's settings for a registry at `addr` (plain HTTP), every API and
/// data kind on except sparse manifests; results go to `dir/results`.
pub fn main_branch_env(addr: &str, dir: &Path) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&str, String)> = vec![
        ("OCI_VERSION", "1.1".to_string()),
        ("OCI_REGISTRY", addr.to_string()),
        ("OCI_TLS", "disabled".to_string()),
        ("OCI_REPO1", "conformance/repo1".to_string()),
        ("OCI_REPO2", "conformance/repo2".to_string()),
        ("OCI_RESULTS_DIR", dir.join("results").display().to_string()),
    ];
    let switches = [
        "OCI_API_PING",
        "OCI_API_PULL",
        "OCI_API_PUSH",
        "OCI_API_BLOBS_ATOMIC",
        "OCI_API_BLOBS_DELETE",
        "OCI_API_BLOBS_DIGEST_HEADER",
        "OCI_API_BLOBS_MOUNT_ANONYMOUS",
        "OCI_API_BLOBS_UPLOAD_CANCEL",
        "OCI_API_MANIFESTS_ATOMIC",
        "OCI_API_MANIFESTS_DELETE",
        "OCI_API_MANIFESTS_DIGEST_HEADER",
        "OCI_API_MANIFESTS_TAG_PARAM",
        "OCI_API_TAGS_ATOMIC",
        "OCI_API_TAGS_DELETE",
        "OCI_API_TAGS_LIST",
        "OCI_API_REFERRER",
        "OCI_DATA_IMAGE",
        "OCI_DATA_INDEX",
        "OCI_DATA_INDEX_LIST",
        "OCI_DATA_ARTIFACT",
        "OCI_DATA_SUBJECT",
        "OCI_DATA_SUBJECT_MISSING",
        "OCI_DATA_ARTIFACT_LIST",
        "OCI_DATA_SUBJECT_LIST",
        "OCI_DATA_DATA_FIELD",
        "OCI_DATA_NONDISTRIBUTABLE",
        "OCI_DATA_CUSTOM_FIELDS",
        "OCI_DATA_NO_LAYERS",
        "OCI_DATA_EMPTY_BLOB",
        "OCI_DATA_SHA512",
    ];
    env.extend(switches.iter().map(|key| (*key, "true".to_string())));
    env
}

pub fn run_suite(server: &Server, binary: &Path, env: &[(&str, String)], dir: &Path, junit: &Path) {
    let mut command = Command::new(binary);
    command.current_dir(dir).env_remove("AWS_CA_BUNDLE");
    for (key, value) in env {
        command.env(key, value);
    }
    let outcome = run_capture(&mut command);
    let xml = fs::read_to_string(junit).unwrap_or_else(|e| {
        panic!(
            "no report at {} ({e}); runner output:\n{}\n{}",
            junit.display(),
            outcome.stdout,
            outcome.stderr
        )
    });
    let cases = junit_cases(&xml);
    let failed: Vec<&str> = cases
        .iter()
        .filter(|c| c.failed)
        .map(|c| c.name.as_str())
        .collect();
    eprintln!(
        "{}: {} cases, {} failed, exit {}",
        binary.display(),
        cases.len(),
        failed.len(),
        outcome.status
    );
    assert!(cases.len() > 20, "suspiciously few cases ran:\n{xml}");
    if server.target == Target::Distribution {
        eprintln!("note: distribution 2.8.2 is not OCI 1.1 conformant; it failed {failed:#?}");
        return;
    }
    let tail: Vec<&str> = outcome.stdout.lines().rev().take(150).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    assert!(
        failed.is_empty() && outcome.status.success(),
        "{} conformance cases failed:\n  {}\n--- runner output (tail) ---\n{}\n--- stderr ---\n{}",
        failed.len(),
        failed.join("\n  "),
        tail.join("\n"),
        outcome.stderr
    );
}
