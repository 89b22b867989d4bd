//! Real clients against an auth-enabled registry: `podman login` then push and pull (and a
//! wrong password refused with a message), skopeo with `--dest-creds`/`--src-creds` round trips
//! bit-identical, a pull-only user's push denied, anonymous skopeo pulls only under
//! `anonymouspull`, and containerd's `ctr images pull --user`. Every client keeps its
//! credentials in a temp `REGISTRY_AUTH_FILE`, never in the home directory.

use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

use super::common::containerd::{Containerd, assert_pulled};
use super::common::oci;
use super::common::podman::isolated;
use super::common::{Target, cmd, run, run_fail};
use super::fixture::{Htpasswd, auth_server, basic, dockyard_only, dockyard_with_auth_yaml, get};

/// A client command with its credentials file under `state` (empty unless a login filled it).
fn client(mut command: Command, state: &Path) -> Command {
    let file = state.join("auth.json");
    if !file.exists() {
        std::fs::create_dir_all(state).unwrap();
        std::fs::write(&file, "{}").unwrap();
    }
    command.env("REGISTRY_AUTH_FILE", file);
    command
}

/// A podman command with private storage and credentials under `state`.
fn podman(state: &Path, args: &[&str]) -> Command {
    let mut command = client(isolated("podman", state), state);
    command.args(args);
    command
}

/// A skopeo command with TLS verification off and credentials under `state`.
fn skopeo(state: &Path, args: &[&str]) -> Command {
    let mut command = client(cmd("skopeo", ["copy"]), state);
    command.args(["--src-tls-verify=false", "--dest-tls-verify=false"]);
    command.args(args);
    command
}

/// Whether a client's error output says it was refused for lack of (valid) credentials.
fn says_unauthorized(stderr: &str) -> bool {
    let text = stderr.to_ascii_lowercase();
    text.contains("unauthorized")
        || text.contains("invalid username/password")
        || text.contains("authentication required")
}

#[test]
fn podman_logs_in_then_pushes_and_pulls() {
    let users = Htpasswd::new(&[("dev", "dev-pass")]);
    let server = auth_server(&users.path, &[]);
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("src");
    let image = oci::write_oci_layout(&src, "podman-auth", &[128 << 10]);
    let addr = server.addr.as_str();
    let layout = format!("oci:{}:podman-auth", src.display());
    let seeded = format!("{addr}/team/src:v1");
    let pushed = format!("{addr}/team/app:v1");
    run(&mut skopeo(
        tmp.path(),
        &[
            "--dest-creds",
            "dev:dev-pass",
            &layout,
            &format!("docker://{seeded}"),
        ],
    ));

    // Without a login the pull is refused for want of credentials.
    let first = tmp.path().join("first");
    let refused = run_fail(&mut podman(
        &first,
        &["pull", "--tls-verify=false", &seeded],
    ));
    assert!(says_unauthorized(&refused.stderr), "{}", refused.stderr);

    let login = [
        "login",
        "--tls-verify=false",
        "-u",
        "dev",
        "-p",
        "dev-pass",
        addr,
    ];
    run(&mut podman(&first, &login));
    let saved = std::fs::read_to_string(first.join("auth.json")).unwrap();
    assert!(saved.contains(addr), "login saved no credentials: {saved}");
    run(&mut podman(
        &first,
        &["pull", "--tls-verify=false", &seeded],
    ));
    run(&mut podman(
        &first,
        &["push", "--tls-verify=false", &seeded, &pushed],
    ));
    let resp = get(
        &server,
        "/v2/team/app/tags/list",
        Some(&basic("dev", "dev-pass")),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.text().contains("v1"), "{}", resp.text());

    // A fresh storage logs in and pulls what podman pushed (podman re-compresses: compare
    // the uncompressed layers).
    let second = tmp.path().join("second");
    let refused = run_fail(&mut podman(
        &second,
        &["pull", "--tls-verify=false", &pushed],
    ));
    assert!(says_unauthorized(&refused.stderr), "{}", refused.stderr);
    run(&mut podman(&second, &login));
    run(&mut podman(
        &second,
        &["pull", "--tls-verify=false", &pushed],
    ));
    let inspect = run(&mut podman(&second, &["image", "inspect", &pushed]));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(
        inspect[0]["RootFS"]["Layers"],
        serde_json::json!(image.diff_ids)
    );
}

#[test]
fn podman_login_with_a_wrong_password_fails_and_says_why() {
    let users = Htpasswd::new(&[("dev", "dev-pass")]);
    let server = auth_server(&users.path, &[]);
    let tmp = TempDir::new().unwrap();
    let outcome = run_fail(&mut podman(
        tmp.path(),
        &[
            "login",
            "--tls-verify=false",
            "-u",
            "dev",
            "-p",
            "wrong",
            &server.addr,
        ],
    ));
    assert!(says_unauthorized(&outcome.stderr), "{}", outcome.stderr);
    let saved = std::fs::read_to_string(tmp.path().join("auth.json")).unwrap_or_default();
    assert!(
        !saved.contains(&server.addr),
        "saved bad credentials: {saved}"
    );
}

#[test]
fn skopeo_round_trip_with_credentials_is_bit_identical() {
    let users = Htpasswd::new(&[("dev", "dev-pass")]);
    let server = auth_server(&users.path, &[]);
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("src");
    let image = oci::write_oci_layout(&src, "skopeo-auth", &[512 << 10, 3000]);
    let layout = format!("oci:{}:skopeo-auth", src.display());
    let remote = format!("docker://{}/team/tool:v1", server.addr);

    let refused = run_fail(&mut skopeo(tmp.path(), &[&layout, &remote]));
    assert!(says_unauthorized(&refused.stderr), "{}", refused.stderr);
    let wrong = run_fail(&mut skopeo(
        tmp.path(),
        &["--dest-creds", "dev:wrong", &layout, &remote],
    ));
    assert!(says_unauthorized(&wrong.stderr), "{}", wrong.stderr);

    run(&mut skopeo(
        tmp.path(),
        &["--dest-creds", "dev:dev-pass", &layout, &remote],
    ));
    let out = tmp.path().join("out");
    let pulled = format!("oci:{}:v1", out.display());
    let refused = run_fail(&mut skopeo(tmp.path(), &[&remote, &pulled]));
    assert!(says_unauthorized(&refused.stderr), "{}", refused.stderr);
    run(&mut skopeo(
        tmp.path(),
        &["--src-creds", "dev:dev-pass", &remote, &pulled],
    ));
    assert_eq!(oci::layout_ref(&out, "v1"), image.manifest_digest);
    oci::assert_same_image(&src, &out, &image.manifest_digest);
}

#[test]
fn skopeo_push_by_a_pull_only_user_is_denied() {
    if dockyard_only(Target::from_env(), "access rules") {
        return;
    }
    let users = Htpasswd::new(&[("admin", "admin-pass"), ("viewer", "viewer-pass")]);
    let rules = "  access:
    - users: [admin]
      repositories: [\"**\"]
      actions: [pull, push, delete]
    - users: [\"*\"]
      repositories: [\"**\"]
      actions: [pull]
";
    let server = dockyard_with_auth_yaml(&users, rules);
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("src");
    let image = oci::write_oci_layout(&src, "viewer", &[64 << 10]);
    let layout = format!("oci:{}:viewer", src.display());
    let remote = format!("docker://{}/team/img:v1", server.addr);
    run(&mut skopeo(
        tmp.path(),
        &["--dest-creds", "admin:admin-pass", &layout, &remote],
    ));

    let other = format!("docker://{}/team/img:v2", server.addr);
    let denied = run_fail(&mut skopeo(
        tmp.path(),
        &["--dest-creds", "viewer:viewer-pass", &layout, &other],
    ));
    let stderr = denied.stderr.to_ascii_lowercase();
    assert!(
        stderr.contains("denied") || stderr.contains("403"),
        "{}",
        denied.stderr
    );
    let out = tmp.path().join("out");
    let pulled = format!("oci:{}:v1", out.display());
    run(&mut skopeo(
        tmp.path(),
        &["--src-creds", "viewer:viewer-pass", &remote, &pulled],
    ));
    oci::assert_same_image(&src, &out, &image.manifest_digest);
    let tags = get(
        &server,
        "/v2/team/img/tags/list",
        Some(&basic("admin", "admin-pass")),
    );
    assert!(
        !tags.text().contains("v2"),
        "the denied push tagged: {}",
        tags.text()
    );
}

#[test]
fn skopeo_pulls_anonymously_only_under_anonymouspull() {
    if dockyard_only(Target::from_env(), "anonymous pull") {
        return;
    }
    let users = Htpasswd::new(&[("admin", "admin-pass")]);
    let env = [("REGISTRY_AUTH_ANONYMOUSPULL", "public/**")];
    let server = auth_server(&users.path, &env);
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("src");
    let image = oci::write_oci_layout(&src, "anon", &[32 << 10]);
    let layout = format!("oci:{}:anon", src.display());
    for repo in ["public/base", "private/base"] {
        let remote = format!("docker://{}/{repo}:v1", server.addr);
        run(&mut skopeo(
            tmp.path(),
            &["--dest-creds", "admin:admin-pass", &layout, &remote],
        ));
    }
    let out = tmp.path().join("out");
    let public = format!("docker://{}/public/base:v1", server.addr);
    run(&mut skopeo(
        tmp.path(),
        &[&public, &format!("oci:{}:v1", out.display())],
    ));
    oci::assert_same_image(&src, &out, &image.manifest_digest);

    let private = format!("docker://{}/private/base:v1", server.addr);
    let dest = format!("oci:{}:v2", out.display());
    let refused = run_fail(&mut skopeo(tmp.path(), &[&private, &dest]));
    assert!(says_unauthorized(&refused.stderr), "{}", refused.stderr);
}

#[test]
fn containerd_pulls_with_user_and_is_refused_without() {
    let users = Htpasswd::new(&[("node", "node-pass")]);
    let server = auth_server(&users.path, &[]);
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("src");
    let image = oci::write_oci_layout(&src, "ctr-auth", &[200 << 10]);
    let layout = format!("oci:{}:ctr-auth", src.display());
    let remote = format!("docker://{}/node/app:v1", server.addr);
    run(&mut skopeo(
        tmp.path(),
        &["--dest-creds", "node:node-pass", &layout, &remote],
    ));

    let containerd = Containerd::start();
    let name = format!("{}/node/app:v1", server.addr);
    let pull = ["images", "pull", "--plain-http", "--snapshotter", "native"];
    let refused = run_fail(&mut containerd.ctr(&[&pull[..], &[name.as_str()]].concat()));
    let stderr = refused.stderr.to_ascii_lowercase();
    assert!(
        stderr.contains("401") || stderr.contains("unauthorized"),
        "{}",
        refused.stderr
    );
    let wrong = run_fail(
        &mut containerd.ctr(&[&pull[..], &["--user", "node:wrong", name.as_str()]].concat()),
    );
    assert!(
        wrong.stderr.to_ascii_lowercase().contains("unauthorized") || wrong.stderr.contains("401"),
        "{}",
        wrong.stderr
    );
    run(&mut containerd.ctr(&[&pull[..], &["--user", "node:node-pass", name.as_str()]].concat()));
    assert_pulled(&containerd, &name, &image);
}
