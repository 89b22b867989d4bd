//! The repository list: instant search, the no-JS search and pages.

use super::*;

#[test]
fn repository_list_searches_instantly_and_pages() {
    let server = dockyard();
    let tmp = TempDir::new().unwrap();
    let layout = tmp.path().join("layout");
    // A few with skopeo, 60 more over the API (pagination: 50 per page).
    for (repo, tag) in [
        ("alpine", "3.20"),
        ("team/alpha-api", "v1"),
        ("tools/curl", "8"),
    ] {
        small_image(&layout, tag);
        push_layout(&server, &[], &layout, tag, &format!("{repo}:{tag}"));
    }
    let image = small_image(&layout, "bulk");
    let bulk: Vec<String> = (0..60).map(|i| format!("bulk/svc-{i:03}")).collect();
    for repo in &bulk {
        push_raw(&server, None, &layout, &image, repo, "v1");
    }
    let total = bulk.len() + 3;

    let mut b = Browser::start("list");
    b.goto(&url(&server, "/"));
    b.screenshot("home");
    assert!(b.exists("header a#home"), "no home link");
    assert!(
        !b.exists("#sign-in"),
        "sign-in link without auth configured"
    );
    let first = b.texts("#repositories a.repo");
    assert_eq!(first.len(), 50, "page 1 holds 50 repositories: {first:?}");
    assert!(
        b.text("#result-count").contains(&total.to_string()),
        "count: {}",
        b.text("#result-count")
    );
    assert_eq!(first[0], "alpine", "sorted by name");
    assert_eq!(first[1], "bulk/svc-000");
    let hrefs = b.attrs("#repositories a.repo", "href");
    assert_eq!(hrefs[1].as_deref(), Some("/r/bulk/svc-000"));
    assert!(!b.exists("#prev-page"));

    // Pagination: page 2 holds the rest, and links back.
    b.click("#next-page");
    b.wait_until("page 2", WAIT, |b| b.url().contains("page=2"));
    b.screenshot("page-2");
    let second = b.texts("#repositories a.repo");
    assert_eq!(second.len(), total - 50, "{second:?}");
    assert!(second.contains(&"tools/curl".to_string()));
    assert!(first.iter().all(|n| !second.contains(n)), "pages overlap");
    assert!(b.exists("#prev-page") && !b.exists("#next-page"));
    b.click("#prev-page");
    b.wait_until("page 1 again", WAIT, |b| {
        b.texts("#repositories a.repo") == first
    });

    // Instant search: the list narrows as one types, without a page load.
    b.goto(&url(&server, "/"));
    b.mark_document();
    b.type_into("#search", "alp");
    b.wait_until("the list to narrow to 'alp'", WAIT, |b| {
        b.texts("#repositories a.repo") == ["alpine", "team/alpha-api"]
    });
    assert!(b.same_document(), "typing in #search reloaded the page");
    assert!(
        b.text("#result-count").contains('2'),
        "{}",
        b.text("#result-count")
    );
    b.screenshot("search-alp");
    // Substring at any depth, case-insensitive.
    b.clear("#search");
    b.type_into("#search", "SVC-05");
    b.wait_until("the list to narrow to 'SVC-05'", WAIT, |b| {
        b.texts("#repositories a.repo").len() == 10
    });
    let hits = b.texts("#repositories a.repo");
    assert!(
        hits.iter().all(|n| n.starts_with("bulk/svc-05")),
        "{hits:?}"
    );
    b.clear("#search");
    b.type_into("#search", "no-such-thing");
    b.wait_until("no results", WAIT, |b| b.exists("#no-results"));
    assert_eq!(b.count("#repositories a.repo"), 0);
    assert!(b.same_document(), "instant search navigated");
    b.screenshot("search-none");

    // The no-JS path: /?q= renders the same list on the server.
    let resp = send(&server, "GET", "/?q=alp", None, &[], &[]);
    assert_eq!(resp.status, 200);
    assert_eq!(repo_links(&resp.text()), ["alpine", "team/alpha-api"]);
    let resp = send(&server, "GET", "/?q=svc&page=2", None, &[], &[]);
    assert_eq!(repo_links(&resp.text()).len(), 10, "page 2 of 60 matches");
    // Submitting the form (Enter) also works, and the URL is shareable.
    b.goto(&url(&server, "/?q=curl"));
    assert_eq!(b.texts("#repositories a.repo"), ["tools/curl"]);
    assert_eq!(
        b.eval("return document.querySelector('#search').value", vec![]),
        json!("curl")
    );
    b.click("#repositories a.repo");
    b.wait_until("the repository page", WAIT, |b| {
        b.try_text("#repository").as_deref() == Some("tools/curl")
    });
    b.screenshot("opened");
}
