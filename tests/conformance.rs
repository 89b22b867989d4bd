//! The OCI distribution-spec conformance suites, built by `tests/setup.sh`, against a fresh
//! registry with deletion enabled and every workflow on: the released suite
//! (`oci-conformance-v1.1.1`, or `oci-conformance`) with its `OCI_TEST_*` switches, and the
//! newer runner from the spec's main branch (`oci-conformance-main`) with `OCI_VERSION=1.1`.
//! Each runs in a temp dir (they write report files); the test fails on any failed case and
//! names them. The main-branch runner is skipped, with a note, when setup.sh could not build
//! it. Against distribution 2.8.2 (`DOCKYARD_TEST_TARGET=distribution`), which is not OCI 1.1
//! conformant, failures are only printed.

#[allow(
    dead_code,
    unused_imports,
    reason = "each test crate uses a subset of the shared helpers"
)]
mod common;

use common::Server;
use common::conformance::{find_runner, junit_cases, run_suite, workflow_env};

fn conformance_server() -> Server {
    Server::builder().delete_enabled(true).start()
}

#[test]
fn released_conformance_suite_passes() {
    let binary = find_runner(&["oci-conformance-v1.1.1", "oci-conformance"])
        .expect("conformance runner not found: run tests/setup.sh");
    let server = conformance_server();
    let dir = tempfile::TempDir::new().unwrap();
    let env = workflow_env(&format!("http://{}", server.addr), dir.path());
    let junit = dir.path().join("junit.xml");
    run_suite(&server, &binary, &env, dir.path(), &junit);
}

#[test]
#[ignore = "the Go module proxy reachable here refuses the main-branch conformance module (403); \
            run with --ignored where tests/setup.sh can build oci-conformance-main"]
fn main_branch_conformance_suite_passes() {
    let binary = find_runner(&["oci-conformance-main"])
        .expect("oci-conformance-main not found: tests/setup.sh could not build it here");
    let server = conformance_server();
    let dir = tempfile::TempDir::new().unwrap();
    let results = dir.path().join("results");
    let mut env: Vec<(&str, String)> = vec![
        ("OCI_VERSION", "1.1".to_string()),
        ("OCI_REGISTRY", server.addr.clone()),
        ("OCI_TLS", "disabled".to_string()),
        ("OCI_REPO1", "conformance/repo1".to_string()),
        ("OCI_REPO2", "conformance/repo2".to_string()),
        ("OCI_RESULTS_DIR", results.display().to_string()),
    ];
    let switches = [
        "OCI_API_PING",
        "OCI_API_PULL",
        "OCI_API_PUSH",
        "OCI_API_BLOBS_ATOMIC",
        "OCI_API_BLOBS_DELETE",
        "OCI_API_BLOBS_MOUNT_ANONYMOUS",
        "OCI_API_MANIFESTS_ATOMIC",
        "OCI_API_MANIFESTS_DELETE",
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
    run_suite(
        &server,
        &binary,
        &env,
        dir.path(),
        &results.join("junit.xml"),
    );
}

#[test]
fn junit_parser_finds_failures() {
    let xml = r#"<testsuite><testcase name="a &amp; b" classname="x"></testcase>
        <testcase name="c"><failure message="m">boom</failure></testcase>
        <testcase name="d"/><testcase name="e"><error/></testcase></testsuite>"#;
    let cases = junit_cases(xml);
    let summary: Vec<(&str, bool)> = cases.iter().map(|c| (c.name.as_str(), c.failed)).collect();
    assert_eq!(
        summary,
        [("a & b", false), ("c", true), ("d", false), ("e", true)]
    );
}
