//! Sessions end when they should: a password change ends them, signing out revokes the
//! cookie (a copy of it too), Basic credentials get no sign-out button, and a form post must
//! come from the scheme the browser uses.

use axum::http::{Method, StatusCode};
use base64::Engine;

use super::support::Ui;

fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    format!("Basic {encoded}")
}

/// Rewrites the htpasswd file with `user`'s password changed, the other lines as they were,
/// and reloads it (as the file watcher does).
fn change_password(ui: &Ui, user: &str, password: &str) {
    let old = std::fs::read_to_string(ui.htpasswd()).unwrap();
    let lines: Vec<String> = old
        .lines()
        .map(|l| match l.split_once(':') {
            Some((u, _)) if u == user => crate::auth::htpasswd_line(user, password, 4).unwrap(),
            _ => l.to_owned(),
        })
        .collect();
    std::fs::write(ui.htpasswd(), lines.join("\n")).unwrap();
    ui.auth.as_ref().unwrap().reload().unwrap();
}

#[tokio::test]
async fn a_password_change_ends_that_users_sessions() {
    let ui = Ui::with_auth(false, false).await;
    ui.image("apps/api", &["1"]).await;
    let alice = ui.sign_in("alice").await;
    let reader = ui.sign_in("reader").await;
    let page = ui.get_as("/r/apps/api", &[("cookie", &alice)]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.has(r#"<span id="user">alice</span>"#));
    // A reload that changes nothing of alice's keeps her session.
    change_password(&ui, "reader", "reader-pw");
    let page = ui.get_as("/r/apps/api", &[("cookie", &alice)]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);

    change_password(&ui, "alice", "new-pw");
    let after = ui.get_as("/r/apps/api", &[("cookie", &alice)]).await;
    assert_eq!(after.status, StatusCode::NOT_FOUND);
    assert!(!after.has(r#"id="user""#));
    assert!(
        after
            .header("set-cookie")
            .contains("dockyard_session=; Max-Age=0")
    );
    // reader's hash changed too (a new salt): that session ended as well.
    let r = ui.get_as("/", &[("cookie", &reader)]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The new password signs in again.
    let r = ui
        .post("/-/login", &[], "username=alice&password=new-pw")
        .await;
    let fresh = r.cookie("dockyard_session").expect("a new session");
    let page = ui.get_as("/r/apps/api", &[("cookie", &fresh)]).await;
    assert_eq!(page.status, StatusCode::OK);
}

#[tokio::test]
async fn signing_out_revokes_the_cookie_and_its_copies() {
    let ui = Ui::with_auth(false, false).await;
    ui.image("apps/api", &["1"]).await;
    let cookie = ui.sign_in("reader").await;
    let other = ui.sign_in("reader").await;
    let copy = cookie.clone();
    assert_eq!(
        ui.get_as("/", &[("cookie", &copy)]).await.status,
        StatusCode::OK
    );
    let out = ui.post("/-/logout", &[("cookie", &cookie)], "").await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    // The copy, sent again after signing out, is nobody now (and is cleared).
    let r = ui.get_as("/", &[("cookie", &copy)]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(!r.has(r#"id="user""#));
    assert!(
        r.header("set-cookie")
            .contains("dockyard_session=; Max-Age=0")
    );
    // Another sign-in of the same user (another browser, the same second) goes on.
    assert_ne!(other, cookie);
    let r = ui.get_as("/", &[("cookie", &other)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.has(r#"<span id="user">reader</span>"#));
}

#[tokio::test]
async fn basic_credentials_get_no_sign_out_button() {
    let ui = Ui::with_auth(false, false).await;
    let r = ui
        .get_as("/", &[("authorization", &basic("reader", "reader-pw"))])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.has(r#"<span id="user">reader</span>"#), "{}", r.body);
    assert!(
        !r.has(r#"id="sign-out""#),
        "a button that could not sign out"
    );
    let cookie = ui.sign_in("reader").await;
    let r = ui.get_as("/", &[("cookie", &cookie)]).await;
    assert!(r.has(r#"<span id="user">reader</span>"#) && r.has(r#"id="sign-out""#));
}

#[tokio::test]
async fn posts_must_come_from_the_scheme_the_browser_uses() {
    let ui = Ui::new(true).await;
    ui.image("app", &["a", "b", "c"]).await;
    let post = |origin: &'static str, proto: Option<&'static str>| {
        let mut headers = vec![("origin", origin)];
        headers.extend(proto.map(|p| ("x-forwarded-proto", p)));
        let ui = &ui;
        async move {
            ui.send(Method::POST, "/r/app/-/a/untag", &headers, "")
                .await
                .status
        }
    };
    // The proxy says the browser used HTTP: an HTTPS page of the same host is another origin.
    let https = "https://registry.test:5000";
    let http = "http://registry.test:5000";
    assert_eq!(post(https, Some("http")).await, StatusCode::FORBIDDEN);
    assert_eq!(post(http, Some("https")).await, StatusCode::FORBIDDEN);
    assert_eq!(ui.tags("app").await, ["a", "b", "c"]);
    assert_eq!(post(https, Some("https")).await, StatusCode::SEE_OTHER);
    assert_eq!(ui.tags("app").await, ["b", "c"]);
    // Unknown (no TLS here, no header): the host decides, as before.
    let r = ui
        .send(Method::POST, "/r/app/-/b/untag", &[("origin", https)], "")
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(ui.tags("app").await, ["c"]);
}
