//! Signing in with htpasswd users under access rules, and sessions over raw HTTP.

use super::*;

fn htpasswd_line(user: &str, password: &str) -> String {
    run(Command::new("htpasswd").args(["-Bbn", "-C", "5", user, password]))
        .trim()
        .to_string()
        + "\n"
}

/// A Dockyard with htpasswd users admin (everything) and alice (pull `team-a/*` only), no
/// anonymous access, and team-a/app, team-a/web, team-b/app, other/tool pushed by admin.
fn auth_fixture(dir: &Path) -> Server {
    let htpasswd = dir.join("htpasswd");
    std::fs::write(
        &htpasswd,
        htpasswd_line("admin", "admin-pass") + &htpasswd_line("alice", "alice-pass"),
    )
    .unwrap();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nauth:\n  htpasswd:\n    realm: dockyard-test\n    path: {}\n  access:\n    - users: [admin]\n      repositories: [\"**\"]\n      actions: [pull, push, delete]\n    - users: [alice]\n      repositories: [\"team-a/*\"]\n      actions: [pull]\n",
            htpasswd.display()
        ),
    )
    .unwrap();
    let server = Server::builder()
        .target(Target::Dockyard)
        .delete_enabled(true)
        .env("DOCKYARD_CONFIG", &config.display().to_string())
        .start();
    let admin = basic("admin", "admin-pass");
    let layout = dir.join("layout");
    for repo in ["team-a/app", "team-a/web", "team-b/app", "other/tool"] {
        let image = small_image(&layout, repo);
        push_raw(&server, Some(&admin), &layout, &image, repo, "v1");
    }
    server
}

fn sign_in(b: &Browser, user: &str, password: &str) {
    b.type_into("#username", user);
    b.type_into("#password", password);
    b.click("#sign-in-button");
}

#[test]
fn sign_in_shows_only_what_the_user_may_pull() {
    let tmp = TempDir::new().unwrap();
    let server = auth_fixture(tmp.path());
    let mut b = Browser::start("sign-in");

    // Anonymous: a sign-in link and nothing else.
    b.goto(&url(&server, "/"));
    b.screenshot("anonymous");
    assert!(
        b.exists("#sign-in"),
        "no sign-in link for an anonymous viewer"
    );
    assert_eq!(
        b.count("#repositories a.repo"),
        0,
        "an anonymous viewer sees repositories"
    );
    let html = b.source();
    for repo in ["team-a", "team-b", "other/tool"] {
        assert!(!html.contains(repo), "anonymous page mentions {repo}");
    }
    for path in ["/r/team-a/app", "/r/team-a/app/-/v1", "/-/search?q=team"] {
        let resp = send(&server, "GET", path, None, &[], &[]);
        assert!(
            !resp.text().contains("team-a/app\""),
            "{path} leaks to anonymous: {}",
            resp.status
        );
        assert_ne!(resp.status, 200, "{path} answers 200 to anonymous");
    }

    // A wrong password: an error, still signed out.
    b.click("#sign-in");
    b.wait_until("the login form", WAIT, |b| b.exists("#login-form"));
    sign_in(&b, "alice", "wrong");
    b.wait_until("the login error", WAIT, |b| b.exists("#login-error"));
    b.screenshot("wrong-password");
    assert!(!b.exists("#user"));
    let resp = send(
        &server,
        "POST",
        "/-/login",
        None,
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", &url(&server, "")),
        ],
        b"username=alice&password=wrong",
    );
    assert_eq!(resp.status, 401, "a failed login");
    assert!(resp.text().contains("id=\"login-error\""));

    // alice: only team-a.
    b.goto(&url(&server, "/-/login"));
    sign_in(&b, "alice", "alice-pass");
    b.wait_until("signed in", WAIT, |b| b.exists("#user"));
    b.goto(&url(&server, "/"));
    b.screenshot("alice-home");
    assert_eq!(b.text("#user"), "alice");
    assert!(b.exists("#sign-out") && !b.exists("#sign-in"));
    assert_eq!(
        b.texts("#repositories a.repo"),
        ["team-a/app", "team-a/web"]
    );
    b.type_into("#search", "app");
    b.wait_until("search within what alice may pull", WAIT, |b| {
        b.texts("#repositories a.repo") == ["team-a/app"]
    });
    b.goto(&url(&server, "/r/team-a/app"));
    assert_eq!(b.text("#repository"), "team-a/app");
    assert_eq!(
        b.count("a.untag") + b.count("a.delete-manifest"),
        0,
        "alice may not delete"
    );
    // Another team's repository is "not found", exactly like a missing one.
    b.goto(&url(&server, "/r/team-b/app"));
    b.screenshot("alice-team-b");
    assert!(b.exists("#not-found"), "team-b/app is shown to alice");
    assert!(!b.exists("#tags"));
    let hidden = b.text("main").replace("team-b/app", "NAME");
    b.goto(&url(&server, "/r/team-b/nothing"));
    assert!(b.exists("#not-found"));
    assert_eq!(
        b.text("main").replace("team-b/nothing", "NAME"),
        hidden,
        "a hidden repository differs from a missing one"
    );
    b.goto(&url(&server, "/r/team-b/app/-/v1"));
    assert!(b.exists("#not-found"), "team-b/app:v1 is shown to alice");

    // admin sees everything and may delete; signing out ends it.
    b.click("#sign-out");
    b.wait_until("signed out", WAIT, |b| b.exists("#sign-in"));
    b.goto(&url(&server, "/"));
    assert_eq!(b.count("#repositories a.repo"), 0);
    b.goto(&url(&server, "/-/login"));
    sign_in(&b, "admin", "admin-pass");
    b.wait_until("signed in", WAIT, |b| b.exists("#user"));
    b.goto(&url(&server, "/"));
    assert_eq!(
        b.texts("#repositories a.repo"),
        ["other/tool", "team-a/app", "team-a/web", "team-b/app"]
    );
    b.goto(&url(&server, "/r/team-b/app"));
    assert!(
        b.exists("#tags tr.tag[data-tag='v1'] a.untag"),
        "admin has delete rights"
    );
    b.screenshot("admin-team-b");
}

/// The `name=value` of the session cookie a successful `POST /-/login` sets.
fn login_cookie(server: &Server, user: &str, password: &str) -> (Response, String) {
    let origin = url(server, "");
    let body = format!("username={user}&password={password}");
    let resp = send(
        server,
        "POST",
        "/-/login",
        None,
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", &origin),
        ],
        body.as_bytes(),
    );
    let cookie = resp
        .headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.split(';').next().unwrap_or_default().to_string())
        .find(|c| !c.ends_with('='))
        .unwrap_or_default();
    (resp, cookie)
}

#[test]
fn sessions_are_guarded_and_forms_need_rights() {
    let tmp = TempDir::new().unwrap();
    let server = auth_fixture(tmp.path());
    let origin = url(&server, "");
    let form = ("Content-Type", "application/x-www-form-urlencoded");

    let (resp, cookie) = login_cookie(&server, "alice", "alice-pass");
    assert!(
        resp.status == 303 || resp.status == 302,
        "a good login redirects: {} {}",
        resp.status,
        resp.text()
    );
    let set = resp
        .headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.to_ascii_lowercase())
        .find(|v| v.contains("httponly"))
        .unwrap_or_else(|| panic!("no HttpOnly session cookie: {:?}", resp.headers));
    assert!(
        set.contains("samesite"),
        "session cookie without SameSite: {set}"
    );
    assert!(!cookie.is_empty());

    // The session shows alice's repositories, and only them.
    let page = send(&server, "GET", "/", None, &[("Cookie", &cookie)], &[]).text();
    assert_eq!(repo_links(&page), ["team-a/app", "team-a/web"]);
    // A forged or altered cookie is nobody.
    let forged = format!("{cookie}x");
    let page = send(&server, "GET", "/", None, &[("Cookie", &forged)], &[]).text();
    assert!(
        repo_links(&page).is_empty(),
        "an altered cookie still signs in"
    );

    // alice may not untag or delete, even by posting the form herself.
    for path in [
        "/r/team-a/app/-/v1/untag".to_string(),
        "/r/team-b/app/-/v1/untag".to_string(),
    ] {
        let resp = send(
            &server,
            "POST",
            &path,
            None,
            &[("Cookie", &cookie), ("Origin", &origin), form],
            b"",
        );
        assert!(
            resp.status == 403 || resp.status == 404,
            "POST {path} as alice: {}",
            resp.status
        );
    }
    let admin = basic("admin", "admin-pass");
    assert_eq!(api_tags(&server, "team-a/app", Some(&admin)), ["v1"]);
    assert_eq!(api_tags(&server, "team-b/app", Some(&admin)), ["v1"]);

    // admin may, but not from another origin, and not without a session.
    let (_, admin_cookie) = login_cookie(&server, "admin", "admin-pass");
    let resp = send(
        &server,
        "POST",
        "/r/team-b/app/-/v1/untag",
        None,
        &[
            ("Cookie", &admin_cookie),
            ("Origin", "http://evil.test"),
            form,
        ],
        b"",
    );
    assert!(resp.status >= 400, "a cross-origin untag: {}", resp.status);
    let resp = send(
        &server,
        "POST",
        "/r/team-b/app/-/v1/untag",
        None,
        &[("Origin", &origin), form],
        b"",
    );
    assert!(resp.status >= 400, "an anonymous untag: {}", resp.status);
    assert_eq!(api_tags(&server, "team-b/app", Some(&admin)), ["v1"]);
    let resp = send(
        &server,
        "POST",
        "/r/team-b/app/-/v1/untag",
        None,
        &[("Cookie", &admin_cookie), ("Origin", &origin), form],
        b"",
    );
    assert_eq!(resp.status, 303, "admin's untag: {}", resp.text());
    assert!(api_tags(&server, "team-b/app", Some(&admin)).is_empty());

    // Signing out clears the cookie, and this server refuses a copy of it from then on.
    let resp = send(
        &server,
        "POST",
        "/-/logout",
        None,
        &[("Cookie", &cookie), ("Origin", &origin), form],
        b"",
    );
    assert!(
        resp.status == 303 || resp.status == 302,
        "logout: {}",
        resp.status
    );
    let cleared = resp
        .headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .any(|(_, v)| v.to_ascii_lowercase().contains("max-age=0") || v.contains("1970"));
    assert!(
        cleared,
        "logout does not clear the cookie: {:?}",
        resp.headers
    );
    let replay = send(&server, "GET", "/", None, &[("Cookie", &cookie)], &[]).text();
    assert!(
        repo_links(&replay).is_empty(),
        "the session cookie still works after signing out"
    );
}
