//! Authorization through the HTTP API: challenges, 403s, catalog filtering, anonymous
//! pull, and mounts from repositories the caller may not read.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use base64::Engine;

use super::support::{App, OCI_MANIFEST, digest_of};
use crate::auth::{AccessRule, Action, Authenticator, Policy, htpasswd_line};
use crate::content::ContentOptions;

fn creds(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Users: admin (everything), reader (pull everywhere), ci (push to apps/**); every user
/// may pull public/** and apps/**; anonymous callers may pull public/**.
fn app(dir: &tempfile::TempDir) -> (App, App) {
    let path = dir.path().join("htpasswd");
    let lines = ["admin", "reader", "ci"].map(|u| htpasswd_line(u, &format!("{u}-pw"), 4).unwrap());
    std::fs::write(&path, lines.join("\n")).unwrap();
    let rule = |users: &[&str], repos: &[&str], actions: &[Action]| AccessRule {
        users: users.iter().map(|s| s.to_string()).collect(),
        repositories: repos.iter().map(|s| s.to_string()).collect(),
        actions: actions.to_vec(),
    };
    let policy = Policy {
        anonymous_pull: vec!["public/**".into()],
        rules: Some(vec![
            rule(
                &["admin"],
                &["**"],
                &[Action::Pull, Action::Push, Action::Delete],
            ),
            rule(&["reader"], &["**"], &[Action::Pull]),
            rule(&["*"], &["public/**", "apps/**"], &[Action::Pull]),
            rule(&["ci"], &["apps/**"], &[Action::Push]),
        ]),
        pull_only: vec![],
    };
    let auth = Arc::new(Authenticator::load("test-realm".into(), &path, policy).unwrap());
    let options = ContentOptions {
        delete_enabled: true,
        ..ContentOptions::default()
    };
    // The same storage is not shared between the two apps; the open one seeds content checks.
    (
        App::with_auth(options.clone(), Some(auth)),
        App::with_options(options),
    )
}

async fn seed(app: &App, repo: &str, auth: &str) -> String {
    let h = [("authorization", auth), ("content-type", OCI_MANIFEST)];
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let c = digest_of(config);
    let r = app
        .send(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={c}"),
            &h,
            config,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{c}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    let r = app
        .send(
            Method::PUT,
            &format!("/v2/{repo}/manifests/v1"),
            &h,
            manifest.as_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    c
}

#[tokio::test]
async fn anonymous_callers_get_challenges_and_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(&dir);
    let admin = creds("admin", "admin-pw");
    let blob = seed(&app, "secret/app", &admin).await;
    let missing = digest_of(b"nothing");
    for exists in [true, false] {
        let repo = if exists { "secret/app" } else { "secret/none" };
        for (method, path) in [
            (Method::GET, format!("/v2/{repo}/manifests/v1")),
            (Method::HEAD, format!("/v2/{repo}/manifests/v1")),
            (Method::GET, format!("/v2/{repo}/blobs/{blob}")),
            (Method::GET, format!("/v2/{repo}/tags/list")),
            (Method::GET, format!("/v2/{repo}/referrers/{missing}")),
            (Method::POST, format!("/v2/{repo}/blobs/uploads/")),
            (Method::DELETE, format!("/v2/{repo}/manifests/v1")),
            (Method::GET, "/v2/".to_owned()),
        ] {
            let r = app.send(method.clone(), &path, &[], b"").await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(r.header("www-authenticate"), "Basic realm=\"test-realm\"");
            if method != Method::HEAD {
                assert_eq!(r.code(), "UNAUTHORIZED", "{method} {path}");
                assert!(
                    !String::from_utf8_lossy(&r.body).contains("v1"),
                    "leaks data: {method} {path}"
                );
            }
        }
    }
    // Wrong credentials are 401 even where anonymous callers may read.
    let r = app
        .send(
            Method::GET,
            "/v2/public/x/tags/list",
            &[("authorization", &creds("admin", "nope"))],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.send(Method::GET, "/v2/", &[("authorization", &admin)], b"")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn rules_decide_and_the_catalog_shows_only_what_may_be_pulled() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(&dir);
    let admin = creds("admin", "admin-pw");
    let reader = creds("reader", "reader-pw");
    let ci = creds("ci", "ci-pw");
    seed(&app, "public/base", &admin).await;
    seed(&app, "private/db", &admin).await;
    seed(&app, "apps/web", &ci).await;

    let r = app
        .send(
            Method::POST,
            "/v2/private/db/blobs/uploads/",
            &[("authorization", &reader)],
            b"",
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "DENIED".into())
    );
    let r = app
        .send(
            Method::DELETE,
            "/v2/apps/web/manifests/v1",
            &[("authorization", &ci)],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.send(
            Method::GET,
            "/v2/private/db/manifests/v1",
            &[("authorization", &reader)],
            b""
        )
        .await
        .status,
        StatusCode::OK
    );

    // Anonymous pull only under public/**.
    assert_eq!(
        app.get("/v2/public/base/manifests/v1").await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/v2/private/db/manifests/v1").await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = app.get("/v2/_catalog").await;
    assert_eq!(r.json()["repositories"], serde_json::json!(["public/base"]));
    let r = app
        .send(
            Method::GET,
            "/v2/_catalog",
            &[("authorization", &reader)],
            b"",
        )
        .await;
    assert_eq!(
        r.json()["repositories"],
        serde_json::json!(["apps/web", "private/db", "public/base"])
    );
    let r = app
        .send(Method::GET, "/v2/_catalog", &[("authorization", &ci)], b"")
        .await;
    assert_eq!(
        r.json()["repositories"],
        serde_json::json!(["apps/web", "public/base"])
    );
    let r = app
        .send(
            Method::GET,
            "/v2/private/db/manifests/v1",
            &[("authorization", &ci)],
            b"",
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "DENIED".into())
    );
}

#[tokio::test]
async fn mounting_from_an_unreadable_repository_uploads_instead() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(&dir);
    let admin = creds("admin", "admin-pw");
    let ci = creds("ci", "ci-pw");
    let private = seed(&app, "private/db", &admin).await;
    let shared = seed(&app, "apps/web", &ci).await;
    let mount =
        |digest: &str, from: &str| format!("/v2/apps/x/blobs/uploads/?mount={digest}&from={from}");
    // ci may not pull private/db: no mount, a fresh upload session instead, and no blob.
    let r = app
        .send(
            Method::POST,
            &mount(&private, "private/db"),
            &[("authorization", &ci)],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = app
        .send(
            Method::HEAD,
            &format!("/v2/apps/x/blobs/{private}"),
            &[("authorization", &ci)],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // From a repository ci may pull, the mount happens.
    let r = app
        .send(
            Method::POST,
            &mount(&shared, "apps/web"),
            &[("authorization", &ci)],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Anonymous callers cannot push at all.
    let r = app
        .send(Method::POST, &mount(&shared, "public/base"), &[], b"")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn refusals_before_the_body_is_read_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (app, open) = app(&dir);
    let body = vec![b'x'; 100_000];
    let r = app
        .send(
            Method::PUT,
            "/v2/team/app/manifests/v1",
            &[("content-length", "100000")],
            &body,
        )
        .await;
    assert_eq!(
        (r.status, r.header("connection")),
        (StatusCode::UNAUTHORIZED, "close".to_owned())
    );
    // A body read to its end keeps the connection.
    let d = digest_of(b"kept");
    let r = open
        .send(
            Method::POST,
            &format!("/v2/k/blobs/uploads/?digest={d}"),
            &[("content-length", "4")],
            b"kept",
        )
        .await;
    assert_eq!(
        (r.status, r.header("connection")),
        (StatusCode::CREATED, String::new())
    );
    // So does a request without a body, even when refused.
    assert_eq!(app.get("/v2/").await.header("connection"), "");
}

#[tokio::test]
async fn docker_search_lists_only_what_the_caller_may_pull() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = app(&dir);
    let admin = creds("admin", "admin-pw");
    let ci = creds("ci", "ci-pw");
    seed(&app, "public/base", &admin).await;
    seed(&app, "private/db", &admin).await;
    seed(&app, "apps/web", &ci).await;
    seed(&app, "apps/db-tools", &ci).await;

    // The engine pings first, without credentials.
    let r = app.get("/v1/_ping").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["x-docker-registry-standalone"], "true");

    let names = |r: &super::support::Reply| -> Vec<String> {
        r.json()["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // Anonymous callers may pull public/** only.
    let r = app.get("/v1/search?q=").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(names(&r), vec!["public/base"]);
    let search = |q: &str, who: &str| {
        let (app, uri, who) = (&app, format!("/v1/search?{q}"), who.to_owned());
        async move {
            app.send(Method::GET, &uri, &[("authorization", &who)], b"")
                .await
        }
    };
    let r = search("q=db", &admin).await;
    assert_eq!(names(&r), vec!["apps/db-tools", "private/db"]);
    assert_eq!(r.json()["num_results"], 2);
    assert_eq!(r.json()["query"], "db");
    assert_eq!(
        r.json()["results"][0],
        serde_json::json!({"name": "apps/db-tools", "description": "", "star_count": 0, "is_official": false, "is_automated": false})
    );
    // ci may not pull private/db: it is neither listed nor counted.
    let r = search("q=db", &ci).await;
    assert_eq!(names(&r), vec!["apps/db-tools"]);
    assert_eq!(r.json()["num_results"], 1);
    // Pages.
    let r = search("q=&n=2&page=2", &admin).await;
    assert_eq!(names(&r), vec!["private/db", "public/base"]);
    assert_eq!(
        (r.json()["num_pages"].clone(), r.json()["page"].clone()),
        (serde_json::json!(2), serde_json::json!(2))
    );
    let r = search("q=&n=500", &admin).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID".into())
    );
    // Wrong credentials are refused, not treated as anonymous.
    let r = search("q=", &creds("admin", "wrong")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}
