//! The released OCI conformance suite (every workflow on) against a registry that requires
//! htpasswd logins, with `OCI_USERNAME`/`OCI_PASSWORD`: auth must not break any case. Against
//! distribution 2.8.2, which is not OCI 1.1 conformant, failures are only printed.

use super::common::conformance::{find_runner, run_suite};
use super::fixture::{Htpasswd, auth_server};

#[test]
fn released_conformance_suite_passes_with_basic_auth() {
    let binary = find_runner(&["oci-conformance-v1.1.1", "oci-conformance"])
        .expect("conformance runner not found: run tests/setup.sh");
    let users = Htpasswd::new(&[("conformance", "conformance-pass")]);
    let server = auth_server(&users.path, &[]);
    let dir = tempfile::TempDir::new().unwrap();
    let env = [
        ("OCI_ROOT_URL", format!("http://{}", server.addr)),
        ("OCI_NAMESPACE", "conformance/repo1".to_string()),
        ("OCI_CROSSMOUNT_NAMESPACE", "conformance/repo2".to_string()),
        ("OCI_USERNAME", "conformance".to_string()),
        ("OCI_PASSWORD", "conformance-pass".to_string()),
        ("OCI_TEST_PULL", "1".to_string()),
        ("OCI_TEST_PUSH", "1".to_string()),
        ("OCI_TEST_CONTENT_DISCOVERY", "1".to_string()),
        ("OCI_TEST_CONTENT_MANAGEMENT", "1".to_string()),
        ("OCI_HIDE_SKIPPED_WORKFLOWS", "0".to_string()),
        ("OCI_AUTOMATIC_CROSSMOUNT", "0".to_string()),
        ("OCI_REPORT_DIR", dir.path().display().to_string()),
    ];
    run_suite(
        &server,
        &binary,
        &env,
        dir.path(),
        &dir.path().join("junit.xml"),
    );
    // Every request the suite made carried credentials: none was refused after a login.
    let refused = server
        .log()
        .lines()
        .filter(|l| super::common::server::has_status(l, 403) || l.contains("status=429"))
        .count();
    assert_eq!(
        refused,
        0,
        "requests were denied or rate-limited:\n{}",
        server.log()
    );
}
