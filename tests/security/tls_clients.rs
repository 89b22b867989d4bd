//! Real clients against a registry that requires htpasswd logins AND serves HTTPS with a
//! certificate for 127.0.0.1 from a CA the test makes, trusted only through a directory
//! holding `ca.crt`: `podman login --cert-dir` (no `--tls-verify=false` anywhere), then push
//! and pull; a wrong password and an untrusted CA refused with messages that say why; and
//! containerd pulling `example.test/...` through an HTTPS `hosts.toml` mirror with a `ca`
//! and `--user`, every request carrying `?ns=example.test`, refused (401) without `--user`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tempfile::TempDir;

use super::common::containerd::{Containerd, assert_pulled};
use super::common::oci::{self, ImageInfo};
use super::common::podman::isolated;
use super::common::server::has_status;
use super::common::{Server, cmd, run, run_fail};
use super::fixture::{Htpasswd, auth_builder};

const USER: &str = "tls-user";
const PASSWORD: &str = "tls-pass";

/// One registry with htpasswd auth and TLS, and the directory (holding only `ca.crt`) that
/// makes clients trust it.
struct TlsAuthRegistry {
    server: Server,
    /// `--cert-dir` / `--dest-cert-dir`: only `ca.crt` inside.
    ca_dir: PathBuf,
    /// Client state: credentials files, podman storage, layouts.
    tmp: TempDir,
    _users: Htpasswd,
}

impl TlsAuthRegistry {
    fn start() -> TlsAuthRegistry {
        let users = Htpasswd::new(&[(USER, PASSWORD)]);
        let tmp = TempDir::new().unwrap();

        // A CA, and a server certificate for 127.0.0.1 (and localhost) it signs.
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Dockyard tls_clients test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        let server_params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server_cert = server_params
            .signed_by(&server_key, &Issuer::from_params(&ca_params, &ca_key))
            .unwrap();
        let cert = users.dir.path().join("tls.crt");
        let key = users.dir.path().join("tls.key");
        fs::write(&cert, server_cert.pem()).unwrap();
        fs::write(&key, server_key.serialize_pem()).unwrap();
        let ca_dir = tmp.path().join("ca");
        fs::create_dir(&ca_dir).unwrap();
        fs::write(ca_dir.join("ca.crt"), ca_pem).unwrap();

        let server = auth_builder(&users.path)
            .https()
            .env("REGISTRY_HTTP_TLS_CERTIFICATE", &cert.display().to_string())
            .env("REGISTRY_HTTP_TLS_KEY", &key.display().to_string())
            .start();
        TlsAuthRegistry {
            server,
            ca_dir,
            tmp,
            _users: users,
        }
    }

    fn ca_dir(&self) -> String {
        self.ca_dir.display().to_string()
    }

    fn ca_file(&self) -> String {
        self.ca_dir.join("ca.crt").display().to_string()
    }

    /// Writes a small image (content seeded by `seed`) and pushes it to `repo_tag` with skopeo,
    /// trusting the CA directory and sending the credentials.
    fn push_with_skopeo(&self, seed: &str, sizes: &[usize], repo_tag: &str) -> ImageInfo {
        let layout = self.tmp.path().join(format!("layout-{seed}"));
        let image = oci::write_oci_layout(&layout, seed, sizes);
        let creds = format!("{USER}:{PASSWORD}");
        run(&mut cmd(
            "skopeo",
            [
                "copy",
                "--dest-cert-dir",
                &self.ca_dir(),
                "--dest-creds",
                &creds,
                &format!("oci:{}:{seed}", layout.display()),
                &format!("docker://{}/{repo_tag}", self.server.addr),
            ],
        ));
        image
    }
}

/// Whether a client's error output says it was refused for lack of (valid) credentials.
fn says_unauthorized(stderr: &str) -> bool {
    let text = stderr.to_ascii_lowercase();
    text.contains("unauthorized") || text.contains("invalid username/password")
}

/// A podman command with private storage under `storage` and credentials in `auth_file`.
fn podman(storage: &Path, auth_file: &Path, args: &[&str]) -> Command {
    let mut command = isolated("podman", storage);
    command.env("REGISTRY_AUTH_FILE", auth_file).args(args);
    command
}

#[test]
fn podman_logs_in_pushes_and_pulls_over_https_with_a_cert_dir() {
    let registry = TlsAuthRegistry::start();
    let addr = registry.server.addr.as_str();
    let ca_dir = registry.ca_dir();
    let tmp = registry.tmp.path();
    let auth_file = tmp.join("auth.json");
    fs::write(&auth_file, "{}").unwrap();
    let seeded = format!("{addr}/team/src:v1");
    let pushed = format!("{addr}/team/app:v1");
    let image = registry.push_with_skopeo("podman-tls", &[128 << 10], "team/src:v1");

    let first = tmp.join("first");
    // Without the CA directory the server's certificate is not trusted.
    let untrusted = run_fail(&mut podman(
        &first,
        &auth_file,
        &["login", "-u", USER, "-p", PASSWORD, addr],
    ));
    assert!(
        untrusted.stderr.contains("certificate"),
        "not a certificate error: {}",
        untrusted.stderr
    );
    // Trusted, but with the wrong password.
    let wrong = run_fail(&mut podman(
        &first,
        &auth_file,
        &[
            "login",
            "--cert-dir",
            &ca_dir,
            "-u",
            USER,
            "-p",
            "wrong",
            addr,
        ],
    ));
    assert!(says_unauthorized(&wrong.stderr), "{}", wrong.stderr);
    let saved = fs::read_to_string(&auth_file).unwrap();
    assert!(!saved.contains(addr), "saved credentials: {saved}");

    run(&mut podman(
        &first,
        &auth_file,
        &[
            "login",
            "--cert-dir",
            &ca_dir,
            "-u",
            USER,
            "-p",
            PASSWORD,
            addr,
        ],
    ));
    let saved = fs::read_to_string(&auth_file).unwrap();
    assert!(saved.contains(addr), "login saved no credentials: {saved}");

    run(&mut podman(
        &first,
        &auth_file,
        &["pull", "--cert-dir", &ca_dir, &seeded],
    ));
    run(&mut podman(&first, &auth_file, &["tag", &seeded, &pushed]));
    run(&mut podman(
        &first,
        &auth_file,
        &["push", "--cert-dir", &ca_dir, &pushed],
    ));

    // A fresh storage pulls what podman pushed (podman re-compresses: compare the
    // uncompressed layers).
    let second = tmp.join("second");
    run(&mut podman(
        &second,
        &auth_file,
        &["pull", "--cert-dir", &ca_dir, &pushed],
    ));
    let inspect = run(&mut podman(
        &second,
        &auth_file,
        &["image", "inspect", &pushed],
    ));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(
        inspect[0]["RootFS"]["Layers"],
        serde_json::json!(image.diff_ids)
    );
    let pushes = registry
        .server
        .access_lines("PUT", "/v2/team/app/manifests/v1");
    assert!(
        pushes.iter().any(|l| has_status(l, 201)),
        "no 201 for podman's manifest PUT:\n{}",
        registry.server.log()
    );
}

#[test]
fn containerd_pulls_through_an_https_mirror_with_a_ca_and_user() {
    let registry = TlsAuthRegistry::start();
    let server = &registry.server;
    let image = registry.push_with_skopeo("ctr-tls", &[200 << 10, 3000], "library/app:v3");

    let certs_d = registry.tmp.path().join("certs.d");
    fs::create_dir_all(certs_d.join("example.test")).unwrap();
    let hosts = format!(
        "server = \"http://127.0.0.1:1\"\n\n[host.\"https://{}\"]\n  \
         capabilities = [\"pull\", \"resolve\"]\n  ca = \"{}\"\n",
        server.addr,
        registry.ca_file()
    );
    fs::write(certs_d.join("example.test").join("hosts.toml"), hosts).unwrap();

    let containerd = Containerd::start();
    let name = "example.test/library/app:v3";
    let pull = |user: Option<&str>| {
        let mut command = containerd.ctr(&["images", "pull", "--snapshotter", "native"]);
        command.arg("--hosts-dir").arg(&certs_d);
        if let Some(user) = user {
            command.args(["--user", user]);
        }
        command.arg(name);
        command
    };

    // Without credentials the mirror answers 401 (and the fallback refuses the connection).
    let refused = run_fail(&mut pull(None));
    assert!(
        refused.stderr.contains("401"),
        "not refused with 401: {}",
        refused.stderr
    );
    let listed = run(&mut containerd.ctr(&["images", "ls", "-q"]));
    assert!(!listed.lines().any(|l| l == name), "{listed}");
    let manifest_path = "/v2/library/app/manifests/v3?ns=example.test";
    let challenged = server.access_lines("HEAD", manifest_path);
    assert!(
        challenged.iter().any(|l| has_status(l, 401)),
        "no 401 for HEAD {manifest_path}:\n{}",
        server.log()
    );

    let before = server.log().lines().count();
    run(&mut pull(Some(&format!("{USER}:{PASSWORD}"))));
    assert_pulled(&containerd, name, &image);
    let listed = run(&mut containerd.ctr(&["images", "ls"]));
    assert!(
        listed.lines().any(|l| l.starts_with(name)),
        "{name} not in:\n{listed}"
    );

    // Every request of the mirror pull named the upstream namespace.
    let resolved = server.access_lines("HEAD", manifest_path);
    let fetched = server.access_lines("GET", manifest_path);
    assert!(
        resolved.iter().chain(&fetched).any(|l| has_status(l, 200)),
        "no 200 for the manifest with ?ns=example.test:\n{}",
        server.log()
    );
    for digest in image.layer_digests.iter().chain([&image.config_digest]) {
        let path = format!("/v2/library/app/blobs/{digest}?ns=example.test");
        let lines = server.access_lines("GET", &path);
        assert!(
            lines.iter().any(|l| has_status(l, 200)),
            "no 200 for GET {path}:\n{}",
            server.log()
        );
    }
    let log = server.log();
    let requests: Vec<&str> = log
        .lines()
        .skip(before)
        .filter(|l| l.contains("/v2/"))
        .collect();
    assert!(!requests.is_empty(), "no requests logged:\n{log}");
    for line in &requests {
        assert!(
            line.contains("ns=example.test"),
            "a mirror request without ?ns=example.test: {line}"
        );
    }
}
