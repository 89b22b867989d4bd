//! Dockyard's access extensions as users meet them: per-repository rules (`auth.access`) that
//! answer `403 DENIED` to a valid user without the right, the same for existing and missing
//! repositories; glob semantics (`*` within a segment, `**` across); a catalog (and its
//! pagination links) listing only what the caller may pull; anonymous pull only under
//! `auth.anonymouspull` (YAML and the `REGISTRY_AUTH_ANONYMOUSPULL` variable); and cross-repository
//! mounts or manifests that must not smuggle blobs out of a repository the caller cannot pull.
//! distribution 2.8.2 has none of this: the tests print a note and stop there.

use tempfile::TempDir;

use super::common::oci::{ImageInfo, OCI_MANIFEST};
use super::common::{Server, Target};
use super::fixture::{
    Htpasswd, assert_challenge, assert_denied, auth_server, basic, catalog_names, describe,
    dockyard_only, dockyard_with_auth_yaml, get, push_image, send,
};

const RULES: &str = "  anonymouspull: [\"public/**\"]
  access:
    - users: [\"*\"]
      repositories: [\"shared/*\"]
      actions: [pull]
    - users: [admin]
      repositories: [\"**\"]
      actions: [pull, push, delete]
    - users: [ci]
      repositories: [\"apps/**\"]
      actions: [pull, push, delete]
    - users: [reader]
      repositories: [\"apps/**\", \"secret/**\"]
      actions: [pull]
";

const REPOS: &[&str] = &[
    "apps/team/api",
    "apps/web",
    "public/img",
    "secret/app",
    "shared/base",
    "shared/deep/x",
];

/// A Dockyard with [`RULES`] and one image per repository of [`REPOS`], pushed by admin.
struct Fixture {
    server: Server,
    images: Vec<ImageInfo>,
    _users: Htpasswd,
    _tmp: TempDir,
}

impl Fixture {
    fn start() -> Fixture {
        let users = Htpasswd::new(&[
            ("admin", "admin-pass"),
            ("ci", "ci-pass"),
            ("reader", "reader-pass"),
            ("nobody", "nobody-pass"),
        ]);
        let server = dockyard_with_auth_yaml(&users, RULES);
        let tmp = TempDir::new().unwrap();
        let admin = auth("admin");
        let images = REPOS
            .iter()
            .map(|repo| push_image(&server, Some(&admin), tmp.path(), repo, repo, "v1"))
            .collect();
        Fixture {
            server,
            images,
            _users: users,
            _tmp: tmp,
        }
    }

    fn image(&self, repo: &str) -> &ImageInfo {
        let index = REPOS.iter().position(|r| *r == repo).expect("known repo");
        &self.images[index]
    }

    /// The status of `method path` as `user` (None: anonymous), checking refusals' shape.
    fn status(&self, user: Option<&str>, method: &str, path: &str) -> u16 {
        let auth = user.map(auth);
        let resp = match method {
            "GET" => get(&self.server, path, auth.as_deref()),
            _ => send(&self.server, method, path, auth.as_deref(), &[], &[]),
        };
        let what = format!("{method} {path} as {user:?}");
        match resp.status {
            401 => assert_challenge(&resp, method == "HEAD", &what),
            403 => assert_denied(&resp, method == "HEAD", &what),
            _ => {}
        }
        resp.status
    }
}

/// Basic credentials of a fixture user (password `<user>-pass`).
fn auth(user: &str) -> String {
    basic(user, &format!("{user}-pass"))
}

#[test]
fn access_rules_decide_pull_push_and_delete_per_repository() {
    if dockyard_only(Target::from_env(), "per-repository access rules") {
        return;
    }
    let fx = Fixture::start();
    let manifest = |repo: &str| format!("/v2/{repo}/manifests/v1");
    let by_digest = |repo: &str| format!("/v2/{repo}/manifests/{}", fx.image(repo).manifest_digest);
    let upload = |repo: &str| format!("/v2/{repo}/blobs/uploads/");
    let cases: Vec<(Option<&str>, &str, String, u16)> = vec![
        // ci: everything under apps/**, pull on shared/* through the "*" rule, nothing else.
        (Some("ci"), "GET", manifest("apps/team/api"), 200),
        (Some("ci"), "HEAD", manifest("apps/web"), 200),
        (Some("ci"), "POST", upload("apps/new/deep"), 202),
        (Some("ci"), "GET", manifest("shared/base"), 200),
        (Some("ci"), "GET", manifest("shared/deep/x"), 403),
        (Some("ci"), "GET", manifest("secret/app"), 403),
        (Some("ci"), "GET", manifest("secret/nop"), 403),
        (Some("ci"), "GET", "/v2/secret/app/tags/list".into(), 403),
        (Some("ci"), "POST", upload("secret/app"), 403),
        (Some("ci"), "POST", upload("shared/base"), 403),
        (Some("ci"), "DELETE", by_digest("shared/base"), 403),
        (Some("ci"), "GET", manifest("appsx/web"), 403),
        // reader: pull only, on apps/** and secret/**.
        (Some("reader"), "GET", manifest("secret/app"), 200),
        (Some("reader"), "GET", manifest("apps/team/api"), 200),
        (Some("reader"), "POST", upload("apps/web"), 403),
        (Some("reader"), "DELETE", by_digest("apps/team/api"), 403),
        (Some("reader"), "PUT", manifest("apps/web"), 403),
        // nobody: a valid user with only the "*" rule.
        (Some("nobody"), "GET", "/v2/".into(), 200),
        (Some("nobody"), "GET", manifest("shared/base"), 200),
        (Some("nobody"), "GET", manifest("apps/web"), 403),
        (Some("nobody"), "HEAD", manifest("secret/app"), 403),
        // Anonymous: only pulls under public/**, and a challenge (not a denial) elsewhere.
        (None, "GET", "/v2/".into(), 401),
        (None, "GET", manifest("public/img"), 200),
        (None, "GET", "/v2/public/img/tags/list".into(), 200),
        (None, "POST", upload("public/img"), 401),
        (None, "DELETE", by_digest("public/img"), 401),
        (None, "GET", manifest("shared/base"), 401),
        (None, "GET", manifest("apps/web"), 401),
        // ci may delete under apps/** (last: it removes apps/web's manifest).
        (Some("ci"), "DELETE", by_digest("apps/web"), 202),
        (Some("ci"), "GET", manifest("apps/web"), 404),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(user, method, path, want)| {
            let got = fx.status(*user, method, path);
            (got != *want).then(|| format!("{method} {path} as {user:?}: {got}, want {want}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // A denial is the same whether the repository exists or not, and carries no data.
    let secret = get(&fx.server, &manifest("secret/app"), Some(&auth("ci")));
    let missing = get(&fx.server, &manifest("secret/nop"), Some(&auth("ci")));
    assert_eq!(secret.status, missing.status);
    let clean = |body: &[u8], repo: &str| String::from_utf8_lossy(body).replace(repo, "<repo>");
    assert_eq!(
        clean(&secret.body, "secret/app"),
        clean(&missing.body, "secret/nop")
    );
    let digest = &fx.image("secret/app").manifest_digest;
    assert!(!secret.text().contains(digest.trim_start_matches("sha256:")));
}

#[test]
fn catalog_lists_only_repositories_the_caller_may_pull() {
    if dockyard_only(Target::from_env(), "catalog filtering by access rules") {
        return;
    }
    let fx = Fixture::start();
    let visible = |user: &str| {
        let resp = get(&fx.server, "/v2/_catalog", Some(&auth(user)));
        assert_eq!(resp.status, 200, "{user}: {}", describe(&resp));
        catalog_names(&resp)
    };
    // Users also see what anonymous callers may pull (public/**).
    assert_eq!(visible("admin"), REPOS);
    assert_eq!(
        visible("ci"),
        ["apps/team/api", "apps/web", "public/img", "shared/base"]
    );
    assert_eq!(
        visible("reader"),
        [
            "apps/team/api",
            "apps/web",
            "public/img",
            "secret/app",
            "shared/base"
        ]
    );
    assert_eq!(visible("nobody"), ["public/img", "shared/base"]);

    // Page by page, the links name no hidden repository either.
    let mut path = "/v2/_catalog?n=1".to_string();
    let mut pages = Vec::new();
    for _ in 0..10 {
        let resp = get(&fx.server, &path, Some(&auth("ci")));
        assert_eq!(resp.status, 200, "{path}: {}", describe(&resp));
        pages.extend(catalog_names(&resp));
        let Some(link) = resp.header("link") else {
            break;
        };
        for hidden in ["secret", "deep"] {
            assert!(!link.contains(hidden), "link {link} reveals {hidden}");
        }
        let start = link.find('<').expect("link target") + 1;
        let end = link.find('>').expect("link target");
        path = link[start..end].to_string();
    }
    assert_eq!(
        pages,
        ["apps/team/api", "apps/web", "public/img", "shared/base"]
    );

    // Anonymous callers see at most what they may pull (public/**).
    let resp = get(&fx.server, "/v2/_catalog", None);
    match resp.status {
        401 => assert_challenge(&resp, false, "anonymous catalog"),
        200 => assert_eq!(catalog_names(&resp), ["public/img"]),
        _ => panic!("anonymous catalog: {}", describe(&resp)),
    }
}

#[test]
fn anonymous_pull_from_the_environment_variable_covers_only_its_patterns() {
    if dockyard_only(Target::from_env(), "anonymous pull") {
        return;
    }
    let users = Htpasswd::new(&[("admin", "admin-pass")]);
    let env = [("REGISTRY_AUTH_ANONYMOUSPULL", "public/**,other/*")];
    let server = auth_server(&users.path, &env);
    let tmp = TempDir::new().unwrap();
    let admin = auth("admin");
    let mut images = Vec::new();
    for repo in [
        "public/a/b",
        "other/x",
        "other/x/y",
        "publicity/x",
        "secret/app",
    ] {
        images.push(push_image(
            &server,
            Some(&admin),
            tmp.path(),
            repo,
            repo,
            "v1",
        ));
    }
    for (repo, image, anonymous) in [
        ("public/a/b", &images[0], true),
        ("other/x", &images[1], true),
        ("other/x/y", &images[2], false),
        ("publicity/x", &images[3], false),
        ("secret/app", &images[4], false),
    ] {
        let resp = get(&server, &format!("/v2/{repo}/manifests/v1"), None);
        let blob = get(
            &server,
            &format!("/v2/{repo}/blobs/{}", image.layer_digests[0]),
            None,
        );
        if anonymous {
            assert_eq!(resp.status, 200, "{repo}: {}", describe(&resp));
            assert_eq!(resp.body, image.manifest);
            assert_eq!(blob.status, 200, "{repo} blob: {}", describe(&blob));
        } else {
            assert_challenge(&resp, false, repo);
            assert_challenge(&blob, false, repo);
        }
    }
    // containers/image (skopeo, podman, CRI-O) answers a Basic challenge without credentials
    // with `Authorization: Basic Og==` (empty user and password): that is still anonymous.
    let empty = basic("", "");
    let resp = get(&server, "/v2/public/a/b/manifests/v1", Some(&empty));
    assert_eq!(
        resp.status,
        200,
        "empty Basic credentials: {}",
        describe(&resp)
    );
    let resp = get(&server, "/v2/secret/app/manifests/v1", Some(&empty));
    assert_challenge(&resp, false, "empty Basic credentials on secret/app");

    // Pulling is all: no anonymous push or delete, and the base endpoint still wants a login.
    let upload = send(
        &server,
        "POST",
        "/v2/public/a/b/blobs/uploads/",
        None,
        &[],
        &[],
    );
    assert_challenge(&upload, false, "anonymous push to public/a/b");
    let path = format!("/v2/public/a/b/manifests/{}", images[0].manifest_digest);
    let delete = send(&server, "DELETE", &path, None, &[], &[]);
    assert_challenge(&delete, false, "anonymous delete in public/a/b");
    assert_challenge(&get(&server, "/v2/", None), false, "anonymous /v2/");
    // Without access rules, every valid user may do everything.
    let resp = get(&server, "/v2/_catalog", Some(&admin));
    assert_eq!(resp.status, 200, "{}", describe(&resp));
    assert_eq!(catalog_names(&resp).len(), 5, "{}", describe(&resp));
}

#[test]
fn mounts_and_manifests_cannot_take_blobs_from_a_repository_the_caller_cannot_pull() {
    if dockyard_only(Target::from_env(), "per-repository access rules") {
        return;
    }
    let fx = Fixture::start();
    let ci = auth("ci");
    let secret = fx.image("secret/app");
    let layer = &secret.layer_digests[0];

    let path = format!("/v2/apps/loot/blobs/uploads/?mount={layer}&from=secret/app");
    let resp = send(&fx.server, "POST", &path, Some(&ci), &[], &[]);
    assert!(
        resp.status == 202 || resp.status == 403,
        "mount from secret/app as ci: {}",
        describe(&resp)
    );
    if resp.status == 403 {
        assert_denied(&resp, false, "mount from secret/app as ci");
    }

    // A manifest naming secret/app's blobs must not link them into ci's repository.
    let headers = [("Content-Type", OCI_MANIFEST)];
    let path = "/v2/apps/loot/manifests/v1";
    let resp = send(
        &fx.server,
        "PUT",
        path,
        Some(&ci),
        &headers,
        &secret.manifest,
    );
    assert_ne!(resp.status, 201, "PUT {path}: {}", describe(&resp));
    for digest in secret.layer_digests.iter().chain([&secret.config_digest]) {
        let path = format!("/v2/apps/loot/blobs/{digest}");
        let resp = get(&fx.server, &path, Some(&ci));
        assert_eq!(resp.status, 404, "GET {path} as ci: {}", describe(&resp));
    }
}

#[test]
fn a_logged_in_user_may_pull_what_anonymous_callers_may() {
    if dockyard_only(Target::from_env(), "anonymous pull") {
        return;
    }
    // Clients send the credentials stored for a registry host with every request (podman
    // after `podman login`, containerd with its hosts config), so a user whose rules do not
    // name public/** cannot fall back to pulling it anonymously.
    let fx = Fixture::start();
    let image = fx.image("public/img");
    for user in ["ci", "reader", "nobody"] {
        let resp = get(&fx.server, "/v2/public/img/manifests/v1", Some(&auth(user)));
        assert_eq!(resp.status, 200, "{user}: {}", describe(&resp));
        assert_eq!(resp.body, image.manifest, "{user}");
    }
    assert_eq!(fx.status(None, "GET", "/v2/public/img/manifests/v1"), 200);
}
