//! What every security test needs: htpasswd files made by apache2-utils' `htpasswd -B` (cost 5
//! for speed) and replaced atomically, a registry started with `REGISTRY_AUTH=htpasswd` (both
//! targets) or with a Dockyard `config.yml` holding the extensions (`anonymouspull`, `access`),
//! Basic credentials, raw requests with or without them, image pushes over raw HTTP, and the
//! checks on a refusal (status, challenge, OCI error code).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use super::common::http::{self, Response};
use super::common::oci::{self, ImageInfo, OCI_INDEX, OCI_MANIFEST};
use super::common::server::ServerBuilder;
use super::common::{Server, Target, run};

/// The realm every test server announces.
pub const REALM: &str = "dockyard-test";
/// The challenge a refusal without valid credentials carries.
pub const CHALLENGE: &str = "Basic realm=\"dockyard-test\"";

/// One `user:$2y$05$...` line from `htpasswd -Bbn -C 5`.
pub fn bcrypt_line(user: &str, password: &str) -> String {
    let out = run(Command::new("htpasswd").args(["-Bbn", "-C", "5", user, password]));
    let line = out.lines().next().unwrap_or_default().to_string();
    assert!(line.starts_with(&format!("{user}:$2y$05$")), "{out}");
    line
}

/// An htpasswd file in its own temp dir (which also holds configs and client state).
pub struct Htpasswd {
    pub dir: TempDir,
    pub path: PathBuf,
}

impl Htpasswd {
    /// A file with a bcrypt line for each `(user, password)`.
    pub fn new(users: &[(&str, &str)]) -> Htpasswd {
        let dir = tempfile::Builder::new()
            .prefix("dockyard-auth-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("htpasswd");
        let htpasswd = Htpasswd { dir, path };
        htpasswd.replace(&lines(users));
        htpasswd
    }

    /// Replaces the file the way tools and Kubernetes do: write a temp file, then rename it.
    pub fn replace(&self, contents: &str) {
        let temp = self.dir.path().join(".htpasswd.tmp");
        fs::write(&temp, contents).unwrap();
        fs::rename(&temp, &self.path).unwrap();
    }
}

/// htpasswd file contents with a bcrypt line for each `(user, password)`.
pub fn lines(users: &[(&str, &str)]) -> String {
    users
        .iter()
        .map(|(user, password)| bcrypt_line(user, password) + "\n")
        .collect()
}

/// A registry of the target chosen by the environment, deletion on, authenticating against
/// `htpasswd` through the registry:2 environment variables (plus `extra_env`).
pub fn auth_server(htpasswd: &Path, extra_env: &[(&str, &str)]) -> Server {
    let mut builder = auth_builder(htpasswd);
    for (key, value) in extra_env {
        builder = builder.env(key, value);
    }
    builder.start()
}

/// How [`auth_server`] starts its registry, for callers that add more (HTTPS).
pub fn auth_builder(htpasswd: &Path) -> ServerBuilder {
    Server::builder()
        .delete_enabled(true)
        .env("REGISTRY_AUTH", "htpasswd")
        .env("REGISTRY_AUTH_HTPASSWD_REALM", REALM)
        .env(
            "REGISTRY_AUTH_HTPASSWD_PATH",
            &htpasswd.display().to_string(),
        )
}

/// A Dockyard with deletion on whose `config.yml` (written next to the htpasswd file) holds
/// `auth:` with htpasswd and then `auth_extra`, YAML indented under `auth:` (the Dockyard
/// extensions).
pub fn dockyard_with_auth_yaml(htpasswd: &Htpasswd, auth_extra: &str) -> Server {
    let config = htpasswd.dir.path().join("config.yml");
    let yaml = format!(
        "version: 0.1\nauth:\n  htpasswd:\n    realm: {REALM}\n    path: {}\n{auth_extra}",
        htpasswd.path.display()
    );
    fs::write(&config, yaml).unwrap();
    Server::builder()
        .target(Target::Dockyard)
        .delete_enabled(true)
        .env("DOCKYARD_CONFIG", &config.display().to_string())
        .start()
}

/// True, after printing a note, when `target` is distribution 2.8.2, which lacks `what` (a
/// Dockyard extension).
pub fn dockyard_only(target: Target, what: &str) -> bool {
    let skip = target == Target::Distribution;
    if skip {
        eprintln!("note: skipping {what}: a Dockyard extension distribution 2.8.2 lacks");
    }
    skip
}

pub use super::common::http::basic;

/// Sends one request with an optional `Authorization` value and extra headers.
pub fn send(
    server: &Server,
    method: &str,
    path: &str,
    auth: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if let Some(auth) = auth {
        all.push(("Authorization", auth));
    }
    http::request(&server.addr, method, path, &all, body)
        .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"))
}

/// `GET path` with an optional `Authorization` value, accepting every manifest type.
pub fn get(server: &Server, path: &str, auth: Option<&str>) -> Response {
    let accept = format!("{OCI_MANIFEST}, {OCI_INDEX}");
    send(server, "GET", path, auth, &[("Accept", &accept)], &[])
}

/// The `errors[].code` values of an OCI error body (empty when the body is not one).
pub fn error_codes(resp: &Response) -> Vec<String> {
    let doc: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    doc["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["code"].as_str().map(str::to_string))
        .collect()
}

/// A one-line description of a response for assertion messages.
pub fn describe(resp: &Response) -> String {
    format!(
        "{} {:?} {}",
        resp.status,
        resp.headers,
        String::from_utf8_lossy(&resp.body[..resp.body.len().min(600)])
    )
}

/// Asserts `resp` is a refusal with `status` whose body (unless `head`) carries only `code`.
pub fn assert_refused(resp: &Response, status: u16, code: &str, head: bool, what: &str) {
    assert_eq!(resp.status, status, "{what}: {}", describe(resp));
    if !head {
        let codes = error_codes(resp);
        assert!(
            !codes.is_empty() && codes.iter().all(|c| c == code),
            "{what}: expected error code {code}, got {}",
            describe(resp)
        );
    }
}

/// Asserts `resp` is `401 UNAUTHORIZED` with a Basic challenge for [`REALM`] (the exact
/// header is checked once, in `routes::challenge_is_exactly_the_one_registry_2_sends`).
pub fn assert_challenge(resp: &Response, head: bool, what: &str) {
    assert_refused(resp, 401, "UNAUTHORIZED", head, what);
    let challenge = resp.header("www-authenticate").unwrap_or_default();
    let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
    let realm = format!("realm=\"{REALM}\"");
    assert!(
        scheme.eq_ignore_ascii_case("basic") && params.split(',').any(|p| p.trim() == realm),
        "{what}: no Basic challenge for {REALM}: {}",
        describe(resp)
    );
}

/// Asserts `resp` is `403 DENIED` and carries no content digest.
pub fn assert_denied(resp: &Response, head: bool, what: &str) {
    assert_refused(resp, 403, "DENIED", head, what);
    assert_eq!(resp.header("docker-content-digest"), None, "{what}");
}

/// Uploads `bytes` as a blob of `repo` as `auth`: POST for a session, then one PUT with the
/// digest (what distribution 2.8.2 supports; it ignores `POST ?digest=`).
pub fn upload_blob(server: &Server, auth: Option<&str>, repo: &str, bytes: &[u8]) -> String {
    let digest = oci::digest_of(bytes);
    let path = format!("/v2/{repo}/blobs/uploads/");
    let resp = send(server, "POST", &path, auth, &[], &[]);
    assert_eq!(resp.status, 202, "POST {path}: {}", describe(&resp));
    let location = resp.header("location").expect("upload location");
    let start = location.find("/v2/").expect("upload path");
    let separator = if location.contains('?') { '&' } else { '?' };
    let path = format!("{}{separator}digest={digest}", &location[start..]);
    let octet = [("Content-Type", "application/octet-stream")];
    let resp = send(server, "PUT", &path, auth, &octet, bytes);
    assert_eq!(resp.status, 201, "PUT {path}: {}", describe(&resp));
    digest
}

/// Writes a small OCI image (content seeded by `seed`) to a layout under `dir` and pushes it
/// to `repo:tag` over raw HTTP as `auth`: its blobs, then the manifest.
pub fn push_image(
    server: &Server,
    auth: Option<&str>,
    dir: &Path,
    seed: &str,
    repo: &str,
    tag: &str,
) -> ImageInfo {
    let layout = dir.join(format!("layout-{}", seed.replace('/', "_")));
    let image = oci::write_oci_layout(&layout, seed, &[4096, 700]);
    for digest in image.layer_digests.iter().chain([&image.config_digest]) {
        upload_blob(server, auth, repo, &oci::layout_blob(&layout, digest));
    }
    let path = format!("/v2/{repo}/manifests/{tag}");
    let headers = [("Content-Type", OCI_MANIFEST)];
    let resp = send(server, "PUT", &path, auth, &headers, &image.manifest);
    assert_eq!(resp.status, 201, "PUT {path}: {}", describe(&resp));
    image
}

/// Repository names in a `/v2/_catalog` answer.
pub fn catalog_names(resp: &Response) -> Vec<String> {
    let doc: Value = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("catalog is not JSON ({e}): {}", describe(resp)));
    doc["repositories"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r.as_str().unwrap_or_default().to_string())
        .collect()
}
