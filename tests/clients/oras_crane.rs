//! crane (go-containerregistry) and oras against the registry under test: crane's everyday
//! commands, and oras artifacts with an `artifactType`, `attach` and `discover` through the
//! OCI 1.1 referrers API.

use std::fs;

use super::common::oci::{self, OCI_INDEX};
use super::common::registry::{get_manifest, json};
use super::common::{Server, cmd, http, run};
use tempfile::TempDir;

fn crane(args: &[&str]) -> String {
    run(cmd("crane", args).arg("--insecure"))
}

#[test]
fn crane_push_pull_ls_digest_manifest_catalog_copy() {
    let server = Server::start();
    let tmp = TempDir::new().unwrap();
    let layout = tmp.path().join("layout");
    let image = oci::write_oci_layout(&layout, "crane", &[150 << 10, 20 << 10]);
    let addr = &server.addr;
    let src = format!("{addr}/crane/img:v1");
    crane(&["push", layout.to_str().unwrap(), &src]);

    assert_eq!(crane(&["digest", &src]).trim(), image.manifest_digest);
    assert_eq!(
        crane(&["manifest", &src]).as_bytes(),
        image.manifest.as_slice()
    );
    crane(&["tag", &src, "v2"]);
    let mut tags: Vec<String> = crane(&["ls", &format!("{addr}/crane/img")])
        .lines()
        .map(str::to_string)
        .collect();
    tags.sort();
    assert_eq!(tags, ["v1", "v2"]);

    let copy = format!("{addr}/crane/copy/deep/name:v1");
    crane(&["copy", &src, &copy]);
    assert_eq!(crane(&["digest", &copy]).trim(), image.manifest_digest);
    let catalog: Vec<String> = crane(&["catalog", addr])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(catalog, ["crane/copy/deep/name", "crane/img"]);

    let pulled = tmp.path().join("pulled");
    crane(&["pull", "--format", "oci", &copy, pulled.to_str().unwrap()]);
    oci::assert_same_image(&layout, &pulled, &image.manifest_digest);
}

#[test]
fn oras_push_and_pull_an_artifact() {
    let server = Server::start();
    let tmp = TempDir::new().unwrap();
    let payload = oci::random_bytes(11, 40 << 10);
    fs::write(tmp.path().join("model.bin"), &payload).unwrap();
    let reference = format!("{}/artifacts/model:v1", server.addr);
    run(cmd(
        "oras",
        [
            "push",
            "--plain-http",
            &reference,
            "--artifact-type",
            "application/vnd.dockyard.test.model",
            "model.bin:application/octet-stream",
        ],
    )
    .current_dir(tmp.path()));

    let manifest = json(&get_manifest(&server, "artifacts/model", "v1").body);
    assert_eq!(
        manifest["artifactType"],
        "application/vnd.dockyard.test.model"
    );
    assert_eq!(manifest["layers"][0]["digest"], oci::digest_of(&payload));

    let out = tmp.path().join("out");
    run(cmd("oras", ["pull", "--plain-http", &reference, "-o"]).arg(&out));
    assert!(
        fs::read(out.join("model.bin")).unwrap() == payload,
        "pulled bytes differ"
    );
}

#[test]
fn oras_attach_and_discover_through_the_referrers_api() {
    let server = Server::start();
    let tmp = TempDir::new().unwrap();
    fs::write(tmp.path().join("app.txt"), "the subject").unwrap();
    fs::write(tmp.path().join("sig.txt"), "a signature").unwrap();
    let reference = format!("{}/signed/app:v1", server.addr);
    let oras = |args: &[&str]| run(cmd("oras", args).current_dir(tmp.path()));
    oras(&[
        "push",
        "--plain-http",
        &reference,
        "--artifact-type",
        "application/vnd.dockyard.test.app",
        "app.txt:text/plain",
    ]);
    let subject = oci::digest_of(&get_manifest(&server, "signed/app", "v1").body);
    oras(&[
        "attach",
        "--plain-http",
        "--artifact-type",
        "application/vnd.dockyard.test.sig",
        &reference,
        "sig.txt:text/plain",
    ]);
    let discovered =
        json(oras(&["discover", "--plain-http", "--format", "json", &reference]).as_bytes());
    assert_eq!(discovered["digest"], subject.as_str());
    let referrers = discovered["referrers"].as_array().unwrap();
    assert_eq!(referrers.len(), 1, "{discovered:#}");
    assert_eq!(
        referrers[0]["artifactType"],
        "application/vnd.dockyard.test.sig"
    );
    let signature = referrers[0]["digest"].as_str().unwrap().to_string();

    if server
        .target
        .skip_oci_1_1("referrers API assertions (oras used its tag fallback)")
    {
        return;
    }
    // The registry answered the referrers API, so oras did not need the `sha256-<hex>` tag.
    let fallback_tag = subject.replace(':', "-");
    let puts = server.access_lines("PUT", &format!("/manifests/{fallback_tag}"));
    assert!(
        puts.is_empty(),
        "oras fell back to a referrers tag: {puts:#?}"
    );
    let path = format!("/v2/signed/app/referrers/{subject}");
    let (status, headers, body) = http::http_get(&server.addr, &path);
    assert_eq!(status, 200, "GET {path}");
    let content_type = headers.iter().find(|(k, _)| k == "content-type");
    assert_eq!(content_type.map(|(_, v)| v.as_str()), Some(OCI_INDEX));
    let index = json(&body);
    assert_eq!(index["manifests"][0]["digest"], signature.as_str());
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/vnd.dockyard.test.sig"
    );

    let filtered = http::request(
        &server.addr,
        "GET",
        &format!("{path}?artifactType=application/vnd.dockyard.other"),
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(filtered.status, 200);
    assert_eq!(filtered.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(json(&filtered.body)["manifests"], serde_json::json!([]));
}
