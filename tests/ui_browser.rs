//! The built-in web UI (issue 12) in a real browser: Debian's headless chromium driven over
//! WebDriver (`common::browser`), against a real `dockyard serve` holding images pushed with
//! skopeo (an image index with `--all`) and over the API. Every test asserts on what a user sees
//! (text, focus, layout, colours), and saves a screenshot at each step under
//! `target/artifacts/ui/` (or `$DOCKYARD_ARTIFACTS/ui/`).
//!
//! The DOM ids and classes are the UI's contract (`#repositories a.repo`, `tr.tag[data-tag]`,
//! `#referrers tr.referrer`, ...). Dockyard only: distribution has no UI.

use dockyard_testkit as common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::browser::{Browser, BrowserOptions};
use common::http::{self, Response};
use common::oci::{self, ImageInfo, OCI_INDEX, OCI_MANIFEST};
use common::registry::push_layout;
use common::{Server, Target, run};
use serde_json::{Value, json};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(10);
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const SBOM_TYPE: &str = "application/vnd.example.sbom.v1+json";

// ---- fixtures -----------------------------------------------------------------------------

/// A Dockyard with deletes on (anonymous, no auth).
fn dockyard() -> Server {
    Server::builder()
        .target(Target::Dockyard)
        .delete_enabled(true)
        .start()
}

fn url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.addr)
}

/// A raw request as `auth` (a Basic value) with extra headers; panics on I/O errors.
fn send(
    server: &Server,
    method: &str,
    path: &str,
    auth: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut all = headers.to_vec();
    if let Some(auth) = auth {
        all.push(("Authorization", auth));
    }
    http::request(&server.addr, method, path, &all, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn basic(user: &str, password: &str) -> String {
    use std::io::Write;
    // base64 through coreutils, to need no crate for it.
    let mut child = Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{user}:{password}").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!("Basic {}", String::from_utf8(out.stdout).unwrap().trim())
}

/// Uploads a blob to `repo` (POST, then one PUT with the digest).
fn upload(server: &Server, auth: Option<&str>, repo: &str, bytes: &[u8]) -> String {
    let digest = oci::digest_of(bytes);
    let resp = send(
        server,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        auth,
        &[],
        &[],
    );
    assert_eq!(resp.status, 202, "POST upload to {repo}: {}", resp.text());
    let location = resp.header("location").expect("Location").to_string();
    let path = &location[location.find("/v2/").expect("upload path")..];
    let sep = if path.contains('?') { '&' } else { '?' };
    let resp = send(
        server,
        "PUT",
        &format!("{path}{sep}digest={digest}"),
        auth,
        &[("Content-Type", "application/octet-stream")],
        bytes,
    );
    assert_eq!(resp.status, 201, "PUT blob to {repo}: {}", resp.text());
    digest
}

/// PUTs `manifest` (of `media_type`) as `repo:reference`.
fn put_manifest(
    server: &Server,
    auth: Option<&str>,
    repo: &str,
    reference: &str,
    media_type: &str,
    manifest: &[u8],
) {
    let path = format!("/v2/{repo}/manifests/{reference}");
    let resp = send(
        server,
        "PUT",
        &path,
        auth,
        &[("Content-Type", media_type)],
        manifest,
    );
    assert_eq!(resp.status, 201, "PUT {path}: {}", resp.text());
}

/// Pushes the image `image` of the layout at `layout` to `repo:tag` over the API.
fn push_raw(
    server: &Server,
    auth: Option<&str>,
    layout: &Path,
    image: &ImageInfo,
    repo: &str,
    tag: &str,
) {
    for digest in image.layer_digests.iter().chain([&image.config_digest]) {
        upload(server, auth, repo, &oci::layout_blob(layout, digest));
    }
    put_manifest(server, auth, repo, tag, OCI_MANIFEST, &image.manifest);
}

/// A small image written to `layout` as `tag` (content seeded by `tag`).
fn small_image(layout: &Path, tag: &str) -> ImageInfo {
    oci::write_oci_layout(layout, tag, &[1500, 300])
}

/// An image whose config carries `config` (merged over the test's: entrypoint, cmd, env,
/// labels, created, history) and whose manifest carries `annotations`, tagged `tag` in the
/// layout at `dir`. Layers: `layers` bytes of random data each.
fn rich_image(
    dir: &Path,
    tag: &str,
    layers: &[usize],
    config: Value,
    annotations: Value,
) -> ImageInfo {
    let base = oci::write_oci_layout(dir, tag, layers);
    let mut doc = json!({
        "created": "2024-05-01T12:34:56Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/app", "--serve"],
            "Cmd": ["--port", "8080"],
            "Env": ["PATH=/usr/local/bin:/usr/bin", "GREETING=hello world"],
            "Labels": {"org.opencontainers.image.title": "app", "maintainer": "ops@example.test"},
        },
        "rootfs": {"type": "layers", "diff_ids": base.diff_ids},
        "history": [
            {"created": "2024-05-01T12:30:00Z", "created_by": "/bin/sh -c #(nop) ADD file:base in /"},
            {"created": "2024-05-01T12:34:56Z", "created_by": "COPY app /bin/app"},
            {"created": "2024-05-01T12:34:56Z", "created_by": "ENTRYPOINT [\"/bin/app\"]", "empty_layer": true},
        ],
    });
    merge(&mut doc, &config);
    let config_bytes = serde_json::to_vec(&doc).unwrap();
    let config_digest = oci::write_blob(dir, &config_bytes);
    let layers_json: Vec<Value> = base
        .layer_digests
        .iter()
        .zip(&base.layer_sizes)
        .map(|(d, s)| json!({"mediaType": oci::OCI_LAYER_GZIP, "digest": d, "size": s}))
        .collect();
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": oci::OCI_CONFIG, "digest": config_digest, "size": config_bytes.len()},
        "layers": layers_json,
    });
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        manifest["annotations"] = annotations;
    }
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let digest = oci::write_blob(dir, &manifest);
    retag(dir, tag, OCI_MANIFEST, &digest, manifest.len());
    ImageInfo {
        manifest_digest: digest,
        manifest,
        config_digest,
        ..base
    }
}

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// Points `tag` in the layout's index.json at `digest`.
fn retag(dir: &Path, tag: &str, media_type: &str, digest: &str, size: usize) {
    let path = dir.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let manifests = index["manifests"].as_array_mut().unwrap();
    manifests.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] != tag);
    manifests.push(json!({
        "mediaType": media_type, "digest": digest, "size": size,
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }));
    std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Pushes an SBOM-like artifact whose `subject` is `subject` (a manifest of `repo`) and
/// returns its digest.
fn push_referrer(server: &Server, auth: Option<&str>, repo: &str, subject: &ImageInfo) -> String {
    let empty = upload(server, auth, repo, b"{}");
    let sbom = br#"{"spdxVersion":"SPDX-2.3","name":"app"}"#;
    let layer = upload(server, auth, repo, sbom);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SBOM_TYPE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": layer, "size": sbom.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.manifest_digest, "size": subject.manifest.len()},
        "annotations": {"org.opencontainers.image.created": "2024-05-02T00:00:00Z"},
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = oci::digest_of(&bytes);
    put_manifest(server, auth, repo, &digest, OCI_MANIFEST, &bytes);
    digest
}

/// Parses a size as shown ("2.5 kB", "1.2 MiB", "999 B") into bytes.
fn parse_size(text: &str) -> Option<f64> {
    let text = text.trim().replace('\u{a0}', " ");
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))?;
    let number: f64 = text[..split].replace(',', "").trim().parse().ok()?;
    let unit = text[split..].trim();
    let factor = match unit {
        "B" | "bytes" => 1.0,
        "kB" | "KB" => 1e3,
        "KiB" => 1024.0,
        "MB" => 1e6,
        "MiB" => 1024.0 * 1024.0,
        "GB" => 1e9,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(number * factor)
}

/// Asserts a shown size is `bytes` within the rounding of one decimal (5%).
fn assert_size(shown: &str, bytes: u64, what: &str) {
    let got = parse_size(shown).unwrap_or_else(|| panic!("{what}: {shown:?} is not a size"));
    let want = bytes as f64;
    assert!(
        (got - want).abs() <= want * 0.05 + 1.0,
        "{what}: shows {shown:?} ({got} bytes), the content is {bytes} bytes"
    );
}

/// The tags `/v2/<repo>/tags/list` lists (empty when the repository is gone).
fn api_tags(server: &Server, repo: &str, auth: Option<&str>) -> Vec<String> {
    let resp = send(
        server,
        "GET",
        &format!("/v2/{repo}/tags/list"),
        auth,
        &[],
        &[],
    );
    if resp.status == 404 {
        return Vec::new();
    }
    assert_eq!(resp.status, 200, "tags/list of {repo}: {}", resp.text());
    let doc: Value = serde_json::from_slice(&resp.body).unwrap();
    let mut tags: Vec<String> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    tags
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The names in `<a class="repo">` links of an HTML page (the no-JS path, read raw).
fn repo_links(html: &str) -> Vec<String> {
    html.split("class=\"repo\"")
        .skip(1)
        .filter_map(|rest| {
            let start = rest.find('>')? + 1;
            let end = rest[start..].find('<')? + start;
            Some(rest[start..end].to_string())
        })
        .collect()
}

fn js_str(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

// ---- the harness itself -------------------------------------------------------------------

#[test]
fn browser_harness_drives_headless_chromium() {
    let page = "data:text/html,<html><head><meta name=viewport content=\"width=device-width\"><title>t</title>\
        <style>body{background:white;color:black}\
        @media (prefers-color-scheme: dark){body{background:rgb(10,10,10);color:rgb(240,240,240)}}</style></head>\
        <body><input id=q type=search><a id=l href=%23x>link</a><p id=p>hello &lt;b&gt;</p></body></html>";
    let mut b = Browser::start("harness");
    b.goto(page);
    assert_eq!(b.text("#p"), "hello <b>");
    assert_eq!(
        b.eval("return [innerWidth, innerHeight]", vec![]),
        json!([1280, 900])
    );
    b.tab(1);
    assert_eq!(
        b.eval("return document.activeElement.id", vec![]),
        json!("q")
    );
    b.tab(1);
    assert_eq!(
        b.eval("return document.activeElement.id", vec![]),
        json!("l")
    );
    b.type_into("#q", "abc");
    assert_eq!(
        b.eval("return document.querySelector('#q').value", vec![]),
        json!("abc")
    );
    let shot = b.screenshot("light");
    assert!(std::fs::metadata(&shot).unwrap().len() > 100);
    b.emulate_color_scheme("dark");
    let bg = b.eval(
        "return getComputedStyle(document.body).backgroundColor",
        vec![],
    );
    assert_eq!(bg, json!("rgb(10, 10, 10)"));
    b.screenshot("dark");
    drop(b);
    let mut phone = Browser::start_phone("harness-phone");
    phone.goto(page);
    assert_eq!(phone.eval("return innerWidth", vec![]), json!(390));
    phone.screenshot("phone");
}

// ---- the repository list ------------------------------------------------------------------

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

// ---- a repository and a tag ---------------------------------------------------------------

struct Images {
    v1: ImageInfo,
    v2: ImageInfo,
    index: oci::IndexInfo,
    referrer: String,
    _tmp: TempDir,
}

/// `a.repo` with v1 and its alias v1-alias (one digest), v2, and `multi` (an index over
/// linux/amd64 and linux/arm64 pushed with `skopeo copy --all`); an SBOM refers to v1.
fn a_repo(server: &Server) -> Images {
    let tmp = TempDir::new().unwrap();
    let layout = tmp.path().join("layout");
    let v1 = rich_image(
        &layout,
        "v1",
        &[300_000, 20_000],
        json!({}),
        json!({"org.opencontainers.image.source": "https://example.test/app"}),
    );
    push_layout(server, &[], &layout, "v1", "a.repo:v1");
    push_layout(server, &[], &layout, "v1", "a.repo:v1-alias");
    let v2 = rich_image(
        &layout,
        "v2",
        &[50_000],
        json!({"created": "2024-06-01T00:00:00Z"}),
        json!({}),
    );
    push_layout(server, &[], &layout, "v2", "a.repo:v2");
    let multi = tmp.path().join("multi");
    let index = oci::write_oci_index_layout(&multi, "multi", &[40_000]);
    push_layout(server, &["--all"], &multi, "multi", "a.repo:multi");
    let referrer = push_referrer(server, None, "a.repo", &v1);
    Images {
        v1,
        v2,
        index,
        referrer,
        _tmp: tmp,
    }
}

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

// ---- deleting -----------------------------------------------------------------------------

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

// ---- signing in ---------------------------------------------------------------------------

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

// ---- hostile input ------------------------------------------------------------------------

#[test]
fn script_injection_in_labels_and_annotations_renders_as_text() {
    let server = dockyard();
    let tmp = TempDir::new().unwrap();
    let layout = tmp.path().join("layout");
    let img = "\"><img src=x onerror=\"window.__pwned=1;document.title='pwned'\">";
    let script = "<script>window.__pwned=2;document.title='pwned'</script>";
    let style = "</td></tr></table><style>body{display:none}</style>";
    let image = rich_image(
        &layout,
        "evil",
        &[1000],
        json!({"config": {
            "Labels": {"evil.img": img, "evil.script": script, "<b>key</b>": style},
            "Env": [format!("X={script}")],
            "Entrypoint": [img],
        }}),
        json!({"org.example.evil": script, "org.example.img": img}),
    );
    push_layout(&server, &[], &layout, "evil", "hostile/app:evil");
    push_referrer(&server, None, "hostile/app", &image);

    let mut b = Browser::start("hostile");
    b.goto(&url(&server, "/r/hostile/app/-/evil"));
    let title = b.title();
    b.screenshot("tag-page");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !title.contains("pwned") && !b.title().contains("pwned"),
        "a payload ran: title {:?}",
        b.title()
    );
    assert_eq!(
        b.eval("return typeof window.__pwned", vec![]),
        json!("undefined"),
        "a payload ran"
    );
    assert_eq!(
        b.count("img[onerror], img[src=x]"),
        0,
        "an <img> was injected"
    );
    assert_eq!(
        b.count("main script, main style"),
        0,
        "a <script>/<style> was injected"
    );
    let labels = b.text("#labels");
    for text in [img, script, "<b>key</b>", style] {
        assert!(
            labels.contains(text),
            "label {text:?} not shown verbatim in {labels:?}"
        );
    }
    assert!(b.text("#annotations").contains(script) && b.text("#annotations").contains(img));
    assert!(b.text("#env").contains(&format!("X={script}")));
    // Shown as a JSON array (quotes escaped), but as text: the markup is visible.
    let entrypoint = b.text("#entrypoint");
    assert!(
        entrypoint.contains("<img src=x onerror="),
        "entrypoint: {entrypoint:?}"
    );
    assert_eq!(
        b.eval("return getComputedStyle(document.body).display", vec![]),
        json!("block"),
        "an injected style applied"
    );
    // The repository page and the list too.
    b.goto(&url(&server, "/r/hostile/app"));
    assert_eq!(
        b.eval("return typeof window.__pwned", vec![]),
        json!("undefined")
    );
    b.goto(&url(
        &server,
        "/?q=%3Cscript%3Ewindow.__pwned%3D3%3C%2Fscript%3E",
    ));
    b.screenshot("search-payload");
    assert_eq!(
        b.eval("return typeof window.__pwned", vec![]),
        json!("undefined")
    );
    assert!(
        b.text("#no-results").contains("<script>"),
        "the query is shown as text: {}",
        b.text("#no-results")
    );

    // Even if markup got through, the policy forbids inline script: an inline handler the
    // test injects itself (as a payload would) does not run.
    b.goto(&url(&server, "/"));
    b.eval(
        "const d = document.createElement('div'); d.innerHTML = '<img src=\"data:,x\" onerror=\"window.__pwned=4\">'; document.body.appendChild(d); return null",
        vec![],
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        b.eval("return typeof window.__pwned", vec![]),
        json!("undefined"),
        "CSP let an inline handler run"
    );

    // Security headers on every UI response; no CORS even when asked.
    for path in [
        "/",
        "/?q=a",
        "/-/search?q=a",
        "/r/hostile/app",
        "/r/hostile/app/-/evil",
        "/-/login",
        "/r/nope",
        "/-/static/app.css",
        "/-/static/app.js",
    ] {
        let resp = send(
            &server,
            "GET",
            path,
            None,
            &[("Origin", "http://evil.test")],
            &[],
        );
        assert_eq!(
            resp.header("content-security-policy"),
            Some(CSP),
            "CSP of {path}"
        );
        assert_eq!(
            resp.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            resp.header("referrer-policy"),
            Some("same-origin"),
            "{path}"
        );
        assert_eq!(
            resp.header("access-control-allow-origin"),
            None,
            "CORS on {path}"
        );
    }
}

// ---- layout: phone width, dark mode, keyboard ---------------------------------------------

/// Relative luminance (WCAG) of a computed `rgb(...)`/`rgba(...)` colour.
fn luminance(css: &str) -> f64 {
    let inner = css
        .trim_start_matches("rgba(")
        .trim_start_matches("rgb(")
        .trim_end_matches(')');
    let parts: Vec<f64> = inner
        .split(',')
        .map(|p| p.trim().parse().unwrap_or(0.0))
        .collect();
    let lin = |c: f64| {
        let c = c / 255.0;
        if c <= 0.03928 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * lin(parts[0]) + 0.7152 * lin(parts[1]) + 0.0722 * lin(parts[2])
}

/// The page background (the body's, or the root's when the body is transparent) and text colour.
fn colours(b: &Browser) -> (String, String) {
    let v = b.eval(
        "const t = c => c === 'rgba(0, 0, 0, 0)' || c === 'transparent';
         let bg = getComputedStyle(document.body).backgroundColor;
         if (t(bg)) bg = getComputedStyle(document.documentElement).backgroundColor;
         if (t(bg)) bg = 'rgb(255, 255, 255)';
         return [bg, getComputedStyle(document.body).color, getComputedStyle(document.querySelector('main') || document.body).color]",
        vec![],
    );
    (js_str(&v[0]), js_str(&v[1]))
}

fn contrast(a: f64, b: f64) -> f64 {
    (a.max(b) + 0.05) / (a.min(b) + 0.05)
}

#[test]
fn pages_fit_a_phone_and_stay_legible_in_dark_mode() {
    let server = dockyard();
    let images = a_repo(&server);
    let delete = format!("/r/a.repo/-/{}/delete", images.v2.manifest_digest);
    let referrer = format!("/r/a.repo/-/{}", images.referrer);
    let pages = [
        "/",
        "/r/a.repo",
        "/r/a.repo/-/v1",
        "/r/a.repo/-/multi",
        &referrer,
        "/r/a.repo/-/v1/untag",
        &delete,
    ];

    // Every problem on every page, reported together.
    let mut problems = Vec::new();
    let mut phone = Browser::start_phone("phone");
    for path in pages {
        phone.goto(&url(&server, path));
        phone.screenshot(path);
        let v = phone.eval(
            "return [document.scrollingElement.scrollWidth, window.innerWidth]",
            vec![],
        );
        let (scroll, inner) = (v[0].as_i64().unwrap(), v[1].as_i64().unwrap());
        // Mobile chromium widens the layout viewport to fit content wider than the screen.
        if inner != 390 {
            problems.push(format!(
                "phone {path}: laid out {inner} px wide on a 390 px screen (content wider \
                 than the screen, or no viewport meta); scrollWidth {scroll}"
            ));
        } else if scroll > inner {
            problems.push(format!(
                "phone {path}: horizontal overflow: scrollWidth {scroll} > innerWidth {inner}"
            ));
        }
    }
    // The pull command is still on screen on a phone (not clipped away).
    phone.goto(&url(&server, "/r/a.repo"));
    let visible = phone.eval(
        "const r = document.querySelector('code.pull-command').getBoundingClientRect(); \
         return r.width > 0 && r.left >= 0 && r.right <= innerWidth + 1",
        vec![],
    );
    if visible != json!(true) {
        problems.push("phone /r/a.repo: the pull command is off screen".into());
    }
    drop(phone);

    // Light first (the default), then the browser's dark mode.
    let light = Browser::start("light");
    light.goto(&url(&server, "/r/a.repo/-/v1"));
    let (bg, fg) = colours(&light);
    if !(luminance(&bg) > 0.5 && luminance(&fg) < 0.3) {
        problems.push(format!("light mode: background {bg}, text {fg}"));
    }
    drop(light);
    let mut dark = Browser::with(
        "dark",
        BrowserOptions {
            dark: true,
            ..Default::default()
        },
    );
    for path in pages {
        dark.goto(&url(&server, path));
        dark.screenshot(path);
        let (bg, fg) = colours(&dark);
        let (lb, lf) = (luminance(&bg), luminance(&fg));
        if lb >= 0.2 || lf <= 0.4 || contrast(lb, lf) < 4.5 {
            problems.push(format!(
                "dark {path}: background {bg}, text {fg}: contrast {:.1}",
                contrast(lb, lf)
            ));
        }
        // Links, cells, code and headings too (WCAG's 3:1 at least).
        let v = dark.eval(
            "return Array.from(document.querySelectorAll('main a, main td, main th, main code, main h1, main button'))
               .filter(e => e.innerText.trim() !== '').slice(0, 60)
               .map(e => [e.tagName + '.' + e.className + ' ' + e.innerText.trim().slice(0, 20), getComputedStyle(e).color])",
            vec![],
        );
        for pair in v.as_array().unwrap() {
            let (what, colour) = (js_str(&pair[0]), js_str(&pair[1]));
            let c = contrast(lb, luminance(&colour));
            if c < 3.0 {
                problems.push(format!(
                    "dark {path}: {what:?} is {colour} on {bg}: contrast {c:.1}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn keyboard_reaches_search_then_the_first_repository() {
    let server = dockyard();
    let tmp = TempDir::new().unwrap();
    let layout = tmp.path().join("layout");
    let image = small_image(&layout, "k");
    for repo in ["kb/first", "kb/second", "kb/third"] {
        push_raw(&server, None, &layout, &image, repo, "v1");
    }
    let mut b = Browser::start("keyboard");
    b.goto(&url(&server, "/"));
    let mut seen = Vec::new();
    for _ in 0..12 {
        b.tab(1);
        let v = b.eval(
            "const e = document.activeElement; return [e.id, e.tagName, e.className, e.getAttribute('href') || '']",
            vec![],
        );
        let what = format!(
            "{}#{}.{}[{}]",
            js_str(&v[1]),
            js_str(&v[0]),
            js_str(&v[2]),
            js_str(&v[3])
        );
        seen.push(what.clone());
        if js_str(&v[2]).split(' ').any(|c| c == "repo") {
            break;
        }
    }
    b.screenshot("focus-first-repo");
    let search = seen
        .iter()
        .position(|s| s.contains("#search."))
        .unwrap_or_else(|| panic!("Tab never reached #search: {seen:?}"));
    let repo = seen
        .iter()
        .position(|s| s.contains(".repo["))
        .unwrap_or_else(|| panic!("Tab never reached a repository: {seen:?}"));
    assert!(
        search < repo,
        "the search box comes before the list: {seen:?}"
    );
    assert!(
        seen[repo].ends_with("[/r/kb/first]"),
        "the first repository link first: {seen:?}"
    );
    assert!(
        repo - search <= 2,
        "only the search button between the box and the list: {seen:?}"
    );
    // The focus is visible (an outline or a box shadow).
    let styled = b.eval(
        "const s = getComputedStyle(document.activeElement); return s.outlineStyle !== 'none' && s.outlineWidth !== '0px' || s.boxShadow !== 'none'",
        vec![],
    );
    assert_eq!(styled, json!(true), "no visible focus on the focused link");
    // Enter opens it.
    b.press("\u{E007}");
    b.wait_until("the repository page", WAIT, |b| {
        b.try_text("#repository").as_deref() == Some("kb/first")
    });
    b.screenshot("opened-by-keyboard");
}

// ---- a mirror -----------------------------------------------------------------------------

#[test]
fn mirror_shows_what_it_cached_per_upstream() {
    let upstream = Server::builder().target(Target::Dockyard).start();
    let tmp = TempDir::new().unwrap();
    let layout = tmp.path().join("layout");
    let image = oci::write_oci_layout(&layout, "m", &[200_000, 5000]);
    push_layout(&upstream, &[], &layout, "m", "lib/app:1.0");
    push_layout(&upstream, &[], &layout, "m", "lib/other:1.0");
    let mirror = common::mirror::mirror(&[(
        "REGISTRY_PROXY_REMOTEURL",
        &format!("http://{}", upstream.addr),
    )]);
    // Two pulls of the same image: the second is served from the cache.
    for round in 0..2 {
        let out = tmp.path().join(format!("pulled-{round}"));
        common::registry::skopeo_copy(
            &[],
            &format!("docker://{}/lib/app:1.0", mirror.addr),
            &format!("oci:{}:1.0", out.display()),
        );
    }
    let mut b = Browser::start("mirror");
    b.goto(&url(&mirror, "/"));
    b.screenshot("mirror-home");
    assert_eq!(
        b.texts("#repositories a.repo"),
        ["lib/app"],
        "the mirror lists what it cached"
    );
    let row = format!("#upstreams tr.upstream[data-host='{}']", upstream.addr);
    assert!(
        b.exists(&row),
        "no row for upstream {} in {:?}",
        upstream.addr,
        b.try_text("#upstreams")
    );
    assert_eq!(b.count("#upstreams tr.upstream"), 1);
    assert_eq!(b.text(&format!("{row} .repositories")), "1");
    assert_eq!(b.text(&format!("{row} .tags")), "1");
    let bytes = b.text(&format!("{row} .bytes"));
    let cached: u64 = image.layer_sizes.iter().sum();
    let got = parse_size(&bytes).unwrap_or_else(|| panic!("bytes {bytes:?}"));
    assert!(
        got >= cached as f64 * 0.95,
        "bytes {bytes:?}: at least the layers ({cached}) are cached"
    );
    let last = b.text(&format!("{row} .last-pulled"));
    assert!(
        !last.is_empty() && last != "—" && last != "never",
        "last pulled: {last:?}"
    );
    let ratio = b.text(&format!("{row} .hit-ratio"));
    assert!(
        ratio.chars().any(|c| c.is_ascii_digit()),
        "hit ratio: {ratio:?}"
    );
    let overall = b.text("#hit-ratio");
    assert!(
        overall.chars().any(|c| c.is_ascii_digit()),
        "#hit-ratio: {overall:?}"
    );
    // No deleting on a mirror.
    b.goto(&url(&mirror, "/r/lib/app"));
    b.screenshot("mirror-repo");
    assert!(b.exists("#tags tr.tag[data-tag='1.0']"));
    assert_eq!(b.count("a.untag") + b.count("a.delete-manifest"), 0);
    let _ = OCI_INDEX;
}

// ---- tag pages, assets, turning it off ----------------------------------------------------

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
