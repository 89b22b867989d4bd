//! The released OCI conformance suite (every workflow on), and the main-branch runner, against a registry that requires
//! htpasswd logins, with `OCI_USERNAME`/`OCI_PASSWORD`, over plain HTTP and over HTTPS (a
//! self-signed `openssl req -x509` certificate the runner trusts through `SSL_CERT_FILE`):
//! auth must not break any case. Against distribution 2.8.2, which is not OCI 1.1
//! conformant, failures are only printed.

use std::path::Path;
use std::process::Command;

use super::common::Server;
use super::common::conformance::{find_runner, main_branch_env, run_suite, workflow_env};
use super::common::run;
use super::common::server::has_status;
use super::fixture::{Htpasswd, auth_builder};

const USER: &str = "conformance";
const PASSWORD: &str = "conformance-pass";

/// Runs the released suite against `server` (reached at `root_url`) with credentials.
fn run_with_credentials(server: &Server, root_url: &str, extra_env: &[(&str, String)]) {
    let binary = find_runner(&["oci-conformance-v1.1.1", "oci-conformance"])
        .expect("conformance runner not found: run tests/setup.sh");
    let dir = tempfile::TempDir::new().unwrap();
    let mut env = workflow_env(root_url, dir.path());
    env.push(("OCI_USERNAME", USER.to_string()));
    env.push(("OCI_PASSWORD", PASSWORD.to_string()));
    env.extend(extra_env.iter().cloned());
    run_suite(
        server,
        &binary,
        &env,
        dir.path(),
        &dir.path().join("junit.xml"),
    );
    // Every request the suite made with its credentials was let through.
    let log = server.log();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| has_status(l, 403) || has_status(l, 429))
        .map(|l| &l[..l.len().min(300)])
        .collect();
    assert!(
        refused.is_empty(),
        "denied or rate-limited:\n{}",
        refused.join("\n")
    );
}

#[test]
fn released_conformance_suite_passes_with_basic_auth() {
    let users = Htpasswd::new(&[(USER, PASSWORD)]);
    let server = auth_builder(&users.path).start();
    run_with_credentials(&server, &format!("http://{}", server.addr), &[]);
}

#[test]
fn main_branch_conformance_suite_passes_with_basic_auth() {
    let binary = find_runner(&["oci-conformance-main"])
        .expect("oci-conformance-main not found: run tests/setup.sh");
    let users = Htpasswd::new(&[(USER, PASSWORD)]);
    let server = auth_builder(&users.path).start();
    let dir = tempfile::TempDir::new().unwrap();
    let mut env = main_branch_env(&server.addr, dir.path());
    env.push(("OCI_USERNAME", USER.to_string()));
    env.push(("OCI_PASSWORD", PASSWORD.to_string()));
    run_suite(
        &server,
        &binary,
        &env,
        dir.path(),
        &dir.path().join("results/junit.xml"),
    );
    assert!(
        !server
            .log()
            .lines()
            .any(|l| has_status(l, 403) || has_status(l, 429)),
        "the suite's signed-in requests were denied or throttled"
    );
}

/// A self-signed certificate for 127.0.0.1 and its key, written into `dir`.
fn self_signed(dir: &Path) -> (String, String) {
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    run(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-keyout",
        &key,
        "-out",
        &cert,
    ]));
    (cert, key)
}

#[test]
fn released_conformance_suite_passes_with_basic_auth_over_tls() {
    let users = Htpasswd::new(&[(USER, PASSWORD)]);
    let (cert, key) = self_signed(users.dir.path());
    let server = auth_builder(&users.path)
        .https()
        .env("REGISTRY_HTTP_TLS_CERTIFICATE", &cert)
        .env("REGISTRY_HTTP_TLS_KEY", &key)
        .start();
    let trust = [("SSL_CERT_FILE", cert.clone())];
    run_with_credentials(&server, &format!("https://{}", server.addr), &trust);
}
