//! Signing in and what each viewer sees: only what they may pull, the rest "not found".

use axum::http::StatusCode;
use base64::Engine;

use super::support::Ui;

fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

async fn seeded(anonymous: bool) -> Ui {
    let ui = Ui::with_auth(true, anonymous).await;
    ui.image("public/web", &["1"]).await;
    ui.image("apps/api", &["1"]).await;
    ui.image("secret/db", &["1"]).await;
    ui
}

#[tokio::test]
async fn viewers_see_only_what_they_may_pull() {
    let ui = seeded(true).await;
    // Anonymous: public/** only, and a sign-in link.
    let r = ui.get("/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.has(">public/web<") && !r.has("apps/api") && !r.has("secret/db"),
        "{}",
        r.body
    );
    assert!(r.has(r#"<a id="sign-in" href="/-/login">"#));
    assert!(r.has("1 repository"));
    // A repository one may not pull is exactly as missing as one that does not exist.
    let hidden = ui.get("/r/secret/db").await;
    let missing = ui.get("/r/secret/nothing").await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    assert!(hidden.has(r#"<p id="not-found">"#));
    assert_eq!(
        hidden.body.replace("secret/db", "X"),
        missing.body.replace("secret/nothing", "X")
    );
    assert_eq!(
        ui.get("/r/secret/db/-/1").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(hidden.header("www-authenticate"), "");
    // alice (apps/** and, as everyone, public/**), by session cookie.
    let cookie = ui.sign_in("alice").await;
    let r = ui.get_as("/", &[("cookie", &cookie)]).await;
    assert!(r.has(r#"<span id="user">alice</span>"#) && r.has(r#"id="sign-out""#));
    let ok = ui
        .post("/-/login", &[], "username=alice&password=alice-pw")
        .await;
    let flash = ok.cookie("dockyard_flash").expect("a welcome");
    let r = ui
        .get_as("/", &[("cookie", &format!("{cookie}; {flash}"))])
        .await;
    assert!(
        r.has(r#"<p id="flash" role="status">Signed in as alice.</p>"#),
        "{}",
        r.body
    );
    assert!(!r.has(r#"id="sign-in""#));
    assert!(
        r.has(">apps/api<") && r.has(">public/web<") && !r.has("secret/db"),
        "{}",
        r.body
    );
    let s = ui.get_as("/-/search?q=db", &[("cookie", &cookie)]).await;
    assert!(s.has("0 repositories") && !s.has("secret/db"), "{}", s.body);
    let s = ui.get_as("/?q=db", &[("cookie", &cookie)]).await;
    assert!(s.has(r#"<p id="no-results">"#));
    assert_eq!(
        ui.get_as("/r/secret/db", &[("cookie", &cookie)])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ui.get_as("/r/apps/api", &[("cookie", &cookie)])
            .await
            .status,
        StatusCode::OK
    );
    // reader sees everything, by Basic credentials too.
    let auth = basic("reader", "reader-pw");
    let r = ui.get_as("/", &[("authorization", &auth)]).await;
    assert!(r.has("3 repositories") && r.has("secret/db"));
    let wrong = ui
        .get_as("/", &[("authorization", &basic("reader", "nope"))])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.header("www-authenticate"), "", "no browser dialog");
}

#[tokio::test]
async fn without_anonymous_access_the_list_asks_to_sign_in() {
    let ui = seeded(false).await;
    let r = ui.get("/").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.has(r#"<a id="sign-in" href="/-/login">"#));
    assert!(!r.has("public/web"));
    assert_eq!(r.header("www-authenticate"), "");
    assert_eq!(
        ui.get("/-/search?q=").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(ui.get("/r/public/web").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn signing_in_sets_a_strict_cookie_and_a_wrong_password_is_401() {
    let ui = seeded(true).await;
    let form = ui.get("/-/login").await;
    assert_eq!(form.status, StatusCode::OK);
    for id in [
        r#"<form id="login-form" method="post""#,
        r#"<input id="username" name="username""#,
        r#"<input id="password" name="password" type="password""#,
        r#"<button id="sign-in-button""#,
    ] {
        assert!(form.has(id), "{id}");
    }
    let ok = ui
        .post("/-/login", &[], "username=alice&password=alice-pw")
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.header("location"), "/");
    let set = ok.header("set-cookie");
    assert!(set.starts_with("dockyard_session="), "{set}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP here");
    let proxied = ui
        .send(
            axum::http::Method::POST,
            "/-/login",
            &[
                ("origin", "https://registry.test:5000"),
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-forwarded-proto", "https"),
            ],
            "username=alice&password=alice-pw",
        )
        .await;
    assert!(
        proxied.header("set-cookie").contains("; Secure"),
        "HTTPS at a proxy in front"
    );
    let bad = ui
        .post("/-/login", &[], "username=alice&password=wrong")
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.has(r#"<p id="login-error""#));
    assert_eq!(bad.header("www-authenticate"), "");
    assert_eq!(bad.cookie("dockyard_session"), None);
    let unknown = ui
        .post("/-/login", &[], "username=mallory&password=x")
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    // Back to where the viewer was going, never off the site.
    let next = ui
        .post(
            "/-/login",
            &[],
            "username=alice&password=alice-pw&next=%2Fr%2Fapps%2Fapi",
        )
        .await;
    assert_eq!(next.header("location"), "/r/apps/api");
    let off = ui
        .post(
            "/-/login",
            &[],
            "username=alice&password=alice-pw&next=%2F%2Fevil.test",
        )
        .await;
    assert_eq!(off.header("location"), "/");
    // A cross-site login post is refused.
    let forged = ui
        .send(
            axum::http::Method::POST,
            "/-/login",
            &[("origin", "http://evil.test")],
            "username=alice&password=alice-pw",
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_session_ends_with_its_user_and_on_sign_out() {
    let ui = seeded(true).await;
    let cookie = ui.sign_in("alice").await;
    let r = ui.get_as("/r/apps/api", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, StatusCode::OK);
    // A forged or foreign cookie is nobody (and is cleared).
    let forged = ui
        .get_as("/r/apps/api", &[("cookie", "dockyard_session=YWJj.ZGVm")])
        .await;
    assert_eq!(forged.status, StatusCode::NOT_FOUND);
    assert!(
        forged
            .header("set-cookie")
            .contains("dockyard_session=; Max-Age=0")
    );
    // Signing out clears the cookie (the browser then sends none).
    let out = ui.post("/-/logout", &[("cookie", &cookie)], "").await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(
        out.header("set-cookie")
            .contains("dockyard_session=; Max-Age=0")
    );
    // The user removed from htpasswd: the session no longer works.
    let cookie = ui.sign_in("alice").await;
    let kept = crate::auth::htpasswd_line("admin", "admin-pw", 4).unwrap();
    std::fs::write(ui.htpasswd(), kept).unwrap();
    ui.auth.as_ref().unwrap().reload().unwrap();
    let gone = ui.get_as("/r/apps/api", &[("cookie", &cookie)]).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert!(!gone.has(r#"id="user""#));
}
