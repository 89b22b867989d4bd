//! Untag and delete manifest, with confirmation.

use super::*;

#[test]
fn untag_removes_one_tag_and_delete_lists_every_tag_it_takes() {
    let server = dockyard();
    let images = a_repo(&server);
    let tmp = TempDir::new().unwrap();
    let layout = tmp.path().join("layout");
    // v2 gets a second tag, so deleting its manifest takes both.
    let _ = small_image(&layout, "x");
    push_layout(
        &server,
        &[],
        &tmp.path().join("layout"),
        "x",
        "a.repo:other",
    );
    put_manifest(
        &server,
        None,
        "a.repo",
        "v2-stable",
        OCI_MANIFEST,
        &images.v2.manifest,
    );

    let mut b = Browser::start("delete");
    b.goto(&url(&server, "/r/a.repo"));
    b.screenshot("before");
    // Untag v1: the confirmation page, then only that tag goes.
    b.click("#tags tr.tag[data-tag='v1'] a.untag");
    b.wait_until("the untag confirmation", WAIT, |b| b.exists("#untag-form"));
    b.screenshot("untag-confirm");
    assert!(b.source().contains("v1"));
    assert_eq!(
        api_tags(&server, "a.repo", None),
        ["multi", "other", "v1", "v1-alias", "v2", "v2-stable"],
        "nothing happens before confirming"
    );
    b.click("#confirm-untag");
    b.wait_until("back on the repository page", WAIT, |b| {
        b.exists("#repository") && b.exists("#flash")
    });
    b.screenshot("untagged");
    let shown = sorted(
        b.attrs("#tags tr.tag", "data-tag")
            .into_iter()
            .flatten()
            .collect(),
    );
    assert_eq!(shown, ["multi", "other", "v1-alias", "v2", "v2-stable"]);
    assert_eq!(
        api_tags(&server, "a.repo", None),
        shown,
        "tags/list agrees with the page"
    );
    let resp = send(
        &server,
        "GET",
        &format!("/v2/a.repo/manifests/{}", images.v1.manifest_digest),
        None,
        &[("Accept", OCI_MANIFEST)],
        &[],
    );
    assert_eq!(
        resp.status, 200,
        "the manifest stays (v1-alias still names it)"
    );
    assert!(
        b.text("#flash").contains("v1"),
        "flash: {}",
        b.text("#flash")
    );

    // Delete v2's manifest: the confirmation lists both of its tags.
    b.click("#tags tr.tag[data-tag='v2'] a.delete-manifest");
    b.wait_until("the delete confirmation", WAIT, |b| {
        b.exists("#delete-form")
    });
    b.screenshot("delete-confirm");
    assert_eq!(sorted(b.texts("#tags-to-delete li")), ["v2", "v2-stable"]);
    assert_eq!(
        api_tags(&server, "a.repo", None).len(),
        5,
        "nothing happens before confirming"
    );
    b.click("#confirm-delete");
    b.wait_until("back on the repository page", WAIT, |b| {
        b.exists("#repository") && b.exists("#flash")
    });
    b.screenshot("deleted");
    let shown = sorted(
        b.attrs("#tags tr.tag", "data-tag")
            .into_iter()
            .flatten()
            .collect(),
    );
    assert_eq!(shown, ["multi", "other", "v1-alias"]);
    assert_eq!(api_tags(&server, "a.repo", None), shown);
    let resp = send(
        &server,
        "GET",
        &format!("/v2/a.repo/manifests/{}", images.v2.manifest_digest),
        None,
        &[("Accept", OCI_MANIFEST)],
        &[],
    );
    assert_eq!(resp.status, 404, "v2's manifest is gone");

    // A cross-site POST (no same-origin Origin) does not untag.
    let resp = send(
        &server,
        "POST",
        "/r/a.repo/-/other/untag",
        None,
        &[
            ("Origin", "http://evil.test"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"",
    );
    assert!(resp.status >= 400, "cross-origin untag: {}", resp.status);
    assert!(api_tags(&server, "a.repo", None).contains(&"other".to_string()));

    // Without storage.delete.enabled there is nothing to click.
    drop(b);
    let ro = Server::builder()
        .target(Target::Dockyard)
        .data_dir(&server.data_dir)
        .start();
    let b = Browser::start("delete-disabled");
    b.goto(&url(&ro, "/r/a.repo"));
    assert!(b.exists("#tags tr.tag"));
    assert_eq!(
        b.count("a.untag") + b.count("a.delete-manifest"),
        0,
        "delete links with delete disabled"
    );
}
