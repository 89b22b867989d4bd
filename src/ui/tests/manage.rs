//! Untag and delete: confirmation pages, form posts from this site only, and rights.

use axum::http::{Method, StatusCode};

use super::support::{ORIGIN, Ui};

#[tokio::test]
async fn untag_removes_only_that_tag() {
    let ui = Ui::new(true).await;
    let digest = ui.image("team/app", &["a", "b"]).await;
    let page = ui.get("/r/team/app").await;
    assert!(
        page.has(r#"<a class="untag" href="/r/team/app/-/a/untag">Untag</a>"#),
        "{}",
        page.body
    );
    assert!(page.has(&format!(
        r#"<a class="delete-manifest" href="/r/team/app/-/{digest}/delete">Delete manifest</a>"#
    )));
    let confirm = ui.get("/r/team/app/-/a/untag").await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.has(r#"<form id="untag-form" method="post""#));
    assert!(confirm.has(r#"<button id="confirm-untag""#));
    assert!(confirm.has("still tagged b"), "{}", confirm.body);
    let done = ui.post("/r/team/app/-/a/untag", &[], "").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.header("location"), "/r/team/app");
    assert_eq!(ui.tags("team/app").await, ["b"]);
    let by_digest = ui.get(&format!("/r/team/app/-/{digest}")).await;
    assert_eq!(by_digest.status, StatusCode::OK, "the manifest stays");
    // The flash shows once, as text, on the repository page.
    let flash = done.cookie("dockyard_flash").expect("a flash cookie");
    let page = ui.get_as("/r/team/app", &[("cookie", &flash)]).await;
    assert!(
        page.has(r#"<p id="flash" role="status">Removed the tag a from team/app.</p>"#),
        "{}",
        page.body
    );
    assert!(
        page.header("set-cookie")
            .contains("dockyard_flash=; Max-Age=0")
    );
    assert!(!page.has(r#"data-tag="a""#));
    assert_eq!(
        ui.post("/r/team/app/-/a/untag", &[], "").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn deleting_a_manifest_says_which_tags_go_with_it() {
    let ui = Ui::new(true).await;
    let digest = ui.image("app", &["x", "y"]).await;
    ui.image_with(
        "app",
        &["z"],
        r#"{"architecture":"amd64","os":"linux"}"#,
        b"other",
    )
    .await;
    let confirm = ui.get(&format!("/r/app/-/{digest}/delete")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(
        confirm.has("<ul id=\"tags-to-delete\">\n<li>x</li><li>y</li>\n</ul>"),
        "{}",
        confirm.body
    );
    assert!(!confirm.has("<li>z</li>"));
    assert!(
        confirm.has(r#"<form id="delete-form" method="post""#)
            && confirm.has(r#"<button id="confirm-delete""#)
    );
    let done = ui.post(&format!("/r/app/-/{digest}/delete"), &[], "").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.header("location"), "/r/app");
    assert_eq!(ui.tags("app").await, ["z"]);
    assert_eq!(
        ui.get(&format!("/r/app/-/{digest}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn posts_from_other_sites_are_refused() {
    let ui = Ui::new(true).await;
    let digest = ui.image("app", &["v1"]).await;
    let uri = "/r/app/-/v1/untag";
    for headers in [
        vec![("origin", "http://evil.test")],
        vec![("origin", "null")],
        vec![("referer", "http://evil.test/r/app")],
        vec![],
    ] {
        let r = ui.send(Method::POST, uri, &headers, "").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{headers:?}");
    }
    let r = ui
        .send(
            Method::POST,
            &format!("/r/app/-/{digest}/delete"),
            &[("origin", "http://evil.test")],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(ui.tags("app").await, ["v1"]);
    let from_page = ui
        .send(
            Method::POST,
            uri,
            &[("referer", &format!("{ORIGIN}/r/app/-/v1/untag"))],
            "",
        )
        .await;
    assert_eq!(
        from_page.status,
        StatusCode::SEE_OTHER,
        "a Referer of this site will do"
    );
}

#[tokio::test]
async fn without_delete_enabled_there_are_no_delete_controls() {
    let ui = Ui::new(false).await;
    let digest = ui.image("app", &["v1"]).await;
    let page = ui.get("/r/app").await;
    assert!(!page.has("class=\"untag\"") && !page.has("class=\"delete-manifest\""));
    let manifest = ui.get("/r/app/-/v1").await;
    assert!(!manifest.has("class=\"untag\"") && !manifest.has("class=\"delete-manifest\""));
    assert_eq!(
        ui.get("/r/app/-/v1/untag").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        ui.post("/r/app/-/v1/untag", &[], "").await.status,
        StatusCode::FORBIDDEN
    );
    let r = ui.post(&format!("/r/app/-/{digest}/delete"), &[], "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(ui.tags("app").await, ["v1"]);
}

#[tokio::test]
async fn only_users_with_the_delete_right_get_delete_controls() {
    let ui = Ui::with_auth(true, true).await;
    ui.image("public/app", &["v1"]).await;
    let anonymous = ui.get("/r/public/app").await;
    assert_eq!(anonymous.status, StatusCode::OK);
    assert!(!anonymous.has("class=\"untag\""));
    let reader = ui.sign_in("reader").await;
    let page = ui.get_as("/r/public/app", &[("cookie", &reader)]).await;
    assert!(!page.has("class=\"untag\""));
    let r = ui
        .post("/r/public/app/-/v1/untag", &[("cookie", &reader)], "")
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = ui.post("/r/public/app/-/v1/untag", &[], "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "anonymous");
    assert_eq!(ui.tags("public/app").await, ["v1"]);
    let admin = ui.sign_in("admin").await;
    let page = ui.get_as("/r/public/app", &[("cookie", &admin)]).await;
    assert!(page.has("class=\"untag\""));
    let r = ui
        .post("/r/public/app/-/v1/untag", &[("cookie", &admin)], "")
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(ui.tags("public/app").await.is_empty());
}

#[tokio::test]
async fn deleting_a_manifest_with_many_tags_names_ten_in_the_flash() {
    let ui = Ui::new(true).await;
    let tags: Vec<String> = (0..15).map(|i| format!("t{i:02}")).collect();
    let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let digest = ui.image("app", &tag_refs).await;
    let done = ui.post(&format!("/r/app/-/{digest}/delete"), &[], "").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let flash = done.cookie("dockyard_flash").expect("a flash cookie");
    let page = ui.get_as("/r/app", &[("cookie", &flash)]).await;
    let named = tags[..10].join(", ");
    assert!(
        page.has(&format!(
            r#"<p id="flash" role="status">Deleted the manifest {digest} from app, with the tags {named} and 5 more.</p>"#
        )),
        "{}",
        page.body
    );
    assert!(!page.has("t10") && !page.has("t14"));
}
