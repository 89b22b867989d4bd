//! The built-in web UI (issue 12) in a real browser: Debian's headless chromium driven over
//! WebDriver (`common::browser`), against a real `dockyard serve` holding images pushed with
//! skopeo (an image index with `--all`) and over the API. Every test asserts on what a user sees
//! (text, focus, layout, colours), and saves a screenshot at each step under
//! `target/artifacts/ui/` (or `$DOCKYARD_ARTIFACTS/ui/`).
//!
//! The DOM ids and classes are the UI's contract (`#repositories a.repo`, `tr.tag[data-tag]`,
//! `#referrers tr.referrer`, ...). Dockyard only: distribution has no UI.

#[path = "ui_browser/assets.rs"]
mod assets;
#[path = "ui_browser/deleting.rs"]
mod deleting;
#[path = "ui_browser/hostile.rs"]
mod hostile;
#[path = "ui_browser/layout.rs"]
mod layout;
#[path = "ui_browser/list.rs"]
mod list;
#[path = "ui_browser/mirror.rs"]
mod mirror;
#[path = "ui_browser/repository.rs"]
mod repository;
#[path = "ui_browser/signin.rs"]
mod signin;
use dockyard_testkit as common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::browser::{Browser, BrowserOptions};
use common::http::{self, Response, basic};
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
