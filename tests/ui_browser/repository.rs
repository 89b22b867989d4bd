//! A repository and a tag: digests, sizes, platforms, config, layers, referrers, Copy.

use super::*;

#[test]
fn repository_and_tag_pages_show_what_the_image_is() {
    let server = dockyard();
    let images = a_repo(&server);
    let host = &server.addr;
    let mut b = Browser::start("repo");
    b.grant_clipboard(&url(&server, ""));
    b.goto(&url(&server, "/"));
    b.click("#repositories a.repo[href='/r/a.repo']");
    b.wait_until("a.repo's page", WAIT, |b| {
        b.try_text("#repository").as_deref() == Some("a.repo")
    });
    b.screenshot("repo-page");

    let tags = sorted(
        b.attrs("#tags tr.tag", "data-tag")
            .into_iter()
            .flatten()
            .collect(),
    );
    assert_eq!(tags, ["multi", "v1", "v1-alias", "v2"]);
    let row = |tag: &str, cell: &str| b.text(&format!("#tags tr.tag[data-tag='{tag}'] {cell}"));
    // Digest (possibly shortened) of v1 and its alias.
    for tag in ["v1", "v1-alias"] {
        let shown = row(tag, ".digest").replace('…', "");
        let hex = images.v1.manifest_digest.trim_start_matches("sha256:");
        assert!(
            shown.contains(&hex[..12])
                && images
                    .v1
                    .manifest_digest
                    .contains(shown.trim_start_matches("sha256:").trim()),
            "{tag}: digest cell {shown:?}, want {}",
            images.v1.manifest_digest
        );
    }
    // Total compressed size: the layers (and config) of v1.
    let layers: u64 = images.v1.layer_sizes.iter().sum();
    let shown = row("v1", ".size");
    let got = parse_size(&shown).unwrap_or_else(|| panic!("size {shown:?}"));
    assert!(
        got >= layers as f64 * 0.95 && got <= (layers as f64 + 4096.0) * 1.05,
        "v1 size {shown:?}, layers are {layers} bytes"
    );
    // Created, from the image config.
    let created = row("v1", ".created");
    assert!(created.contains("2024-05-01"), "created: {created:?}");
    assert!(row("v2", ".created").contains("2024-06-01"));
    // Platforms: the index's two; a single image shows its own or nothing.
    let platforms = row("multi", ".platforms");
    assert!(
        platforms.contains("linux/amd64") && platforms.contains("linux/arm64"),
        "{platforms:?}"
    );
    assert!(!row("v1", ".platforms").contains("arm64"));
    // The pull command names the host the browser used.
    assert_eq!(row("v1", "code.pull-command"), format!("{host}/a.repo:v1"));
    assert_eq!(
        row("multi", "code.pull-command"),
        format!("{host}/a.repo:multi")
    );

    // Copy: the button says so, and the clipboard holds the command.
    let button = "#tags tr.tag[data-tag='v1'] button.copy";
    assert_eq!(b.text(button), "Copy");
    b.click(button);
    b.wait_until("the button to say Copied", Duration::from_secs(2), |b| {
        b.text(button) == "Copied"
    });
    b.screenshot("copied");
    let clipboard = b
        .clipboard_text()
        .unwrap_or_else(|e| panic!("reading the clipboard: {e}"));
    assert_eq!(clipboard, format!("{host}/a.repo:v1"), "the clipboard");

    // The tag page: config, layers, annotations, referrers.
    b.click("#tags tr.tag[data-tag='v1'] .tag-name a");
    b.wait_until("v1's page", WAIT, |b| b.exists("#reference"));
    b.screenshot("tag-v1");
    assert!(b.text("#reference").contains("v1"));
    assert_eq!(b.text("#digest"), images.v1.manifest_digest);
    assert!(
        b.text("#entrypoint").contains("/bin/app") && b.text("#entrypoint").contains("--serve"),
        "{}",
        b.text("#entrypoint")
    );
    assert!(b.text("#cmd").contains("8080"), "{}", b.text("#cmd"));
    let env = b.texts("#env li");
    assert_eq!(
        env,
        ["PATH=/usr/local/bin:/usr/bin", "GREETING=hello world"]
    );
    let labels = b.texts("#labels tr.label");
    assert_eq!(labels.len(), 2, "{labels:?}");
    assert!(
        labels
            .iter()
            .any(|l| l.contains("maintainer") && l.contains("ops@example.test")),
        "{labels:?}"
    );
    let history = b.texts("#history li");
    assert_eq!(history.len(), 3, "{history:?}");
    assert!(history[1].contains("COPY app /bin/app"), "{history:?}");
    assert_eq!(b.count("#layers tr.layer"), 2);
    let layer_digests = b.texts("#layers tr.layer .digest");
    let layer_sizes = b.texts("#layers tr.layer .size");
    for (i, digest) in images.v1.layer_digests.iter().enumerate() {
        assert!(
            layer_digests[i].contains(&digest[7..19]),
            "layer {i}: {layer_digests:?}"
        );
        assert_size(
            &layer_sizes[i],
            images.v1.layer_sizes[i],
            &format!("layer {i}"),
        );
    }
    assert!(
        b.texts("#layers tr.layer .media-type")
            .iter()
            .all(|t| t == oci::OCI_LAYER_GZIP)
    );
    assert!(b.text("#annotations").contains("https://example.test/app"));
    let referrers = b.texts("#referrers tr.referrer .artifact-type");
    assert_eq!(referrers, [SBOM_TYPE], "referrers");
    let referrer_digest = b.text("#referrers tr.referrer .digest");
    assert!(
        referrer_digest.contains(&images.referrer[7..19]),
        "{referrer_digest}"
    );
    // The referrer itself opens as an artifact.
    b.click("#referrers tr.referrer .digest a");
    b.wait_until("the referrer's page", WAIT, |b| {
        b.try_text("#digest").as_deref() == Some(images.referrer.as_str())
    });
    b.screenshot("referrer");

    // The index: its platforms, each a link to the child manifest.
    b.goto(&url(&server, "/r/a.repo/-/multi"));
    b.screenshot("tag-multi");
    assert_eq!(b.text("#digest"), images.index.index_digest);
    let platforms = b.texts("#platforms tr.platform td.platform");
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    let links = b.attrs("#platforms tr.platform a", "href");
    for (link, child) in links.iter().zip(&images.index.images) {
        let link = link.clone().unwrap_or_default();
        assert!(
            link.contains(&child.manifest_digest),
            "{link} should open {}",
            child.manifest_digest
        );
    }
    b.click("#platforms tr.platform:nth-child(2) a");
    b.wait_until("the arm64 manifest", WAIT, |b| {
        b.try_text("#digest").as_deref() == Some(images.index.images[1].manifest_digest.as_str())
    });
    assert_eq!(b.count("#layers tr.layer"), 1);
    b.screenshot("child-arm64");
    // v2's page by digest works too.
    b.goto(&url(
        &server,
        &format!("/r/a.repo/-/{}", images.v2.manifest_digest),
    ));
    assert_eq!(b.text("#digest"), images.v2.manifest_digest);
    assert!(b.exists("#no-referrers") || b.count("#referrers tr.referrer") == 0);
}
