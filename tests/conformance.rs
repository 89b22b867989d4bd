//! The OCI distribution-spec conformance suites, built by `tests/setup.sh`, against a fresh
//! registry with deletion enabled and every workflow on: the released suite
//! (`oci-conformance-v1.1.1`, or `oci-conformance`) with its `OCI_TEST_*` switches, and the
//! newer runner from the spec's main branch (`oci-conformance-main`, August 2026) with
//! `OCI_VERSION=1.1` and every optional API on, `?tag=` on manifest pushes included (sparse
//! manifests stay off: Dockyard refuses manifests whose blobs are missing, as the spec allows).
//! Each runs in a temp dir (they write report files); the test fails on any failed case and
//! names them. Against distribution 2.8.2 (`DOCKYARD_TEST_TARGET=distribution`), which is not OCI 1.1
//! conformant, failures are only printed.

use dockyard_testkit as common;

use common::Server;
use common::conformance::{find_runner, junit_cases, main_branch_env, run_suite, workflow_env};

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
fn main_branch_conformance_suite_passes() {
    let binary = find_runner(&["oci-conformance-main"])
        .expect("oci-conformance-main not found: run tests/setup.sh");
    let server = conformance_server();
    let dir = tempfile::TempDir::new().unwrap();
    let env = main_branch_env(&server.addr, dir.path());
    run_suite(
        &server,
        &binary,
        &env,
        dir.path(),
        &dir.path().join("results/junit.xml"),
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
