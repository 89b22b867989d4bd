//! helm as an OCI client: a chart packaged with `helm package` is pushed with `helm push
//! oci://...` and pulled back byte-identical with `helm pull`. Helm's manifests carry no
//! top-level `mediaType` and use `application/vnd.cncf.helm.*` types.

use std::fs;
use std::path::Path;
use std::process::Command;

use super::common::oci;
use super::common::registry::{get_manifest, json};
use super::common::{Server, cmd, run};
use tempfile::TempDir;

/// A helm command whose cache, config and data live under `home`.
fn helm(home: &Path, args: &[&str]) -> Command {
    let mut command = cmd("helm", args);
    command
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .current_dir(home);
    command
}

#[test]
fn helm_push_and_pull_a_chart() {
    let server = Server::start();
    let tmp = TempDir::new().unwrap();
    let home = tmp.path();
    run(&mut helm(home, &["create", "dockyard-demo"]));
    run(&mut helm(
        home,
        &[
            "package",
            "dockyard-demo",
            "--version",
            "1.2.3",
            "-d",
            "pkg",
        ],
    ));
    let chart = fs::read(home.join("pkg/dockyard-demo-1.2.3.tgz")).unwrap();

    let repo = format!("oci://{}/charts", server.addr);
    run(&mut helm(
        home,
        &["push", "pkg/dockyard-demo-1.2.3.tgz", &repo, "--plain-http"],
    ));

    let manifest = json(&get_manifest(&server, "charts/dockyard-demo", "1.2.3").body);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.cncf.helm.config.v1+json"
    );
    let layer = &manifest["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
    );
    assert_eq!(layer["digest"], oci::digest_of(&chart));

    let chart_ref = format!("{repo}/dockyard-demo");
    fs::create_dir(home.join("pulled")).unwrap();
    run(&mut helm(
        home,
        &[
            "pull",
            &chart_ref,
            "--version",
            "1.2.3",
            "--plain-http",
            "-d",
            "pulled",
        ],
    ));
    let pulled = fs::read(home.join("pulled/dockyard-demo-1.2.3.tgz")).unwrap();
    assert!(pulled == chart, "pulled chart differs from the pushed one");
}
