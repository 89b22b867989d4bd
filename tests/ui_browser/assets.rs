//! Tag pages, assets from the registry only, and turning the UI off.

use super::*;

#[test]
fn tags_page_by_fifty_and_pages_load_nothing_from_elsewhere() {
    let server = dockyard();
    let tmp = TempDir::new().unwrap();
    let layout = tmp.path().join("layout");
    let image = small_image(&layout, "many");
    push_raw(&server, None, &layout, &image, "many/tags", "t000");
    for i in 1..55 {
        put_manifest(
            &server,
            None,
            "many/tags",
            &format!("t{i:03}"),
            OCI_MANIFEST,
            &image.manifest,
        );
    }
    let mut b = Browser::start("tag-pages");
    b.goto(&url(&server, "/r/many/tags"));
    b.screenshot("page-1");
    let first: Vec<String> = b
        .attrs("#tags tr.tag", "data-tag")
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(first.len(), 50, "50 tags a page: {first:?}");
    b.click("#next-page");
    b.wait_until("the second page of tags", WAIT, |b| {
        b.url().contains("page=2")
    });
    b.screenshot("page-2");
    let second: Vec<String> = b
        .attrs("#tags tr.tag", "data-tag")
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(second.len(), 5, "{second:?}");
    let mut all: Vec<String> = first.into_iter().chain(second).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 55, "every tag once over the two pages");

    // Everything a page loads comes from the registry's own origin (works offline).
    let origin = url(&server, "");
    for path in ["/", "/r/many/tags", "/r/many/tags/-/t000"] {
        b.goto(&url(&server, path));
        let loaded = b.eval(
            "return performance.getEntriesByType('resource').map(e => e.name)",
            vec![],
        );
        let loaded: Vec<String> = loaded.as_array().unwrap().iter().map(js_str).collect();
        assert!(
            loaded.iter().any(|u| u.contains("/-/static/app.css")),
            "{path}: no stylesheet loaded: {loaded:?}"
        );
        assert!(
            loaded.iter().all(|u| u.starts_with(&origin)),
            "{path} loads from elsewhere: {loaded:?}"
        );
        let html = send(&server, "GET", path, None, &[], &[]).text();
        for attr in [
            "src=\"http",
            "href=\"http",
            "src=\"//",
            "href=\"//",
            "@import",
        ] {
            assert!(!html.contains(attr), "{path} refers elsewhere ({attr})");
        }
    }
    let css = send(&server, "GET", "/-/static/app.css", None, &[], &[]);
    assert_eq!(css.status, 200);
    assert!(
        css.header("content-type")
            .unwrap_or_default()
            .starts_with("text/css")
    );
    assert!(!css.text().contains("url(http") && !css.text().contains("@import"));
    let js = send(&server, "GET", "/-/static/app.js", None, &[], &[]);
    assert_eq!(js.status, 200);
    assert!(
        js.header("content-type")
            .unwrap_or_default()
            .contains("javascript")
    );
}

#[test]
fn the_ui_can_be_turned_off_and_v2_is_untouched() {
    let server = Server::builder()
        .target(Target::Dockyard)
        .env("REGISTRY_UI_ENABLED", "false")
        .start();
    let tmp = TempDir::new().unwrap();
    let layout = tmp.path().join("layout");
    let image = small_image(&layout, "off");
    push_raw(&server, None, &layout, &image, "off/app", "v1");
    for path in [
        "/",
        "/r/off/app",
        "/-/search?q=off",
        "/-/static/app.js",
        "/-/login",
    ] {
        let resp = send(&server, "GET", path, None, &[], &[]);
        assert_eq!(resp.status, 404, "{path} with the UI off: {}", resp.text());
        assert!(
            !resp.text().contains("off/app"),
            "{path} lists the repository"
        );
    }
    assert_eq!(send(&server, "GET", "/v2/", None, &[], &[]).status, 200);
    assert_eq!(api_tags(&server, "off/app", None), ["v1"]);
    let resp = send(&server, "GET", "/v2/_catalog", None, &[], &[]);
    assert_eq!(resp.status, 200);
    assert!(resp.text().contains("off/app"));
    // /v2/ answers the same with the UI on: no UI headers leak into the API.
    let on = dockyard();
    let resp = send(&on, "GET", "/v2/", None, &[], &[]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-security-policy"), None);
    assert_eq!(
        resp.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
}
