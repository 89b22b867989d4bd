//! A mirror's page: what is cached per upstream, its hit ratios (to those who may pull
//! everything), tag counts that never hold up a page, and no deleting.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;

use super::probe::Probe;
use super::support::Ui;
use crate::auth::{AccessRule, Action, Authenticator, Policy, htpasswd_line};
use crate::content::{BlobWant, Store};
use crate::proxy::metrics::ProxyMetrics;
use crate::storage::Driver;
use crate::storage::memory::MemoryDriver;

#[tokio::test]
async fn a_mirror_shows_its_cache_per_upstream_and_offers_no_deletes() {
    let (ui, mirror, metrics) = Ui::mirror().await;
    let alpine = "docker.io/library/alpine";
    ui.image_with(
        alpine,
        &["3.19", "latest"],
        r#"{"architecture":"amd64","os":"linux"}"#,
        &[7; 3000],
    )
    .await;
    ui.image("ghcr.io/org/tool", &["v1"]).await;
    // One blob served from the cache (a hit, and its last use); one miss counted upstream.
    let name = alpine.parse().unwrap();
    let layer = crate::oci::Digest::of(crate::oci::Algorithm::Sha256, &[7; 3000]);
    mirror
        .read_blob(&name, &layer, BlobWant::Head)
        .await
        .unwrap();
    ProxyMetrics::count(&metrics.misses, "docker.io", "blob", 1);

    let r = ui.get("/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.has(r#"<table id="upstreams">"#), "{}", r.body);
    let row = |host: &str| {
        let start = r
            .body
            .find(&format!(r#"<tr class="upstream" data-host="{host}">"#))
            .unwrap();
        let end = start + r.body[start..].find("</tr>").unwrap();
        r.body[start..end].to_owned()
    };
    let docker = row("docker.io");
    assert!(
        docker.contains(r#"<td class="repositories">1</td>"#),
        "{docker}"
    );
    assert!(docker.contains(r#"<td class="tags">2</td>"#), "{docker}");
    assert!(
        docker.contains(r#"data-bytes="3000">3.0 kB</td>"#),
        "{docker}"
    );
    assert!(
        docker.contains(r#"<td class="hit-ratio">50% (1 of 2)</td>"#),
        "{docker}"
    );
    assert!(
        !docker.contains(r#"<td class="last-pulled">—</td>"#),
        "{docker}"
    );
    let ghcr = row("ghcr.io");
    assert!(
        ghcr.contains(r#"<td class="repositories">1</td>"#)
            && ghcr.contains(r#"<td class="tags">1</td>"#)
    );
    assert!(
        ghcr.contains(r#"<td class="last-pulled">—</td>"#)
            && ghcr.contains(r#"<td class="hit-ratio">—</td>"#)
    );
    assert!(r.has(r#"<p id="hit-ratio">Hit ratio: 50% (1 of 2)</p>"#));
    assert!(r.has(r#"<a class="repo" href="/r/docker.io/library/alpine">"#));

    // Pages read the cache; nothing is deleted through a mirror, even with delete enabled.
    let page = ui.get("/r/docker.io/library/alpine").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.has(
        r#"<code class="pull-command">registry.test:5000/docker.io/library/alpine:3.19</code>"#
    ));
    assert!(!page.has("class=\"untag\"") && !page.has("class=\"delete-manifest\""));
    assert_eq!(
        ui.post("/r/docker.io/library/alpine/-/3.19/untag", &[], "")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(ui.tags(alpine).await, ["3.19", "latest"]);
    assert_eq!(
        ui.get("/r/docker.io/library/alpine/-/latest").await.status,
        StatusCode::OK
    );
}

/// The `<tr>` of an upstream on `/`.
fn upstream_row(body: &str, host: &str) -> String {
    let start = body
        .find(&format!(r#"<tr class="upstream" data-host="{host}">"#))
        .unwrap_or_else(|| panic!("no row for {host} in {body}"));
    let end = start + body[start..].find("</tr>").unwrap();
    body[start..end].to_owned()
}

#[tokio::test]
async fn a_recount_of_tags_never_holds_up_a_page() {
    let probe = Probe::new();
    let (ui, _, _) = Ui::mirror_on(probe.clone() as Arc<dyn Driver>, None).await;
    let alpine = "docker.io/library/alpine";
    ui.image(alpine, &["1", "2"]).await;
    let r = ui.get("/").await;
    assert!(upstream_row(&r.body, "docker.io").contains(r#"<td class="tags">2</td>"#));
    ui.image(alpine, &["3"]).await;

    // The counts go stale and storage hangs: pages show the previous counts meanwhile.
    let counts = &ui.state.as_ref().unwrap().0.tag_counts;
    counts.expire();
    probe.hold();
    probe.reset();
    for _ in 0..3 {
        let r = tokio::time::timeout(Duration::from_secs(10), ui.get("/"))
            .await
            .expect("a page waited for a recount");
        assert_eq!(r.status, StatusCode::OK);
        assert!(upstream_row(&r.body, "docker.io").contains(r#"<td class="tags">2</td>"#));
    }
    for _ in 0..1000 {
        if probe.tag_listings() > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(probe.tag_listings(), 1, "one recount at a time");

    probe.release();
    for _ in 0..1000 {
        if counts.idle() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(counts.idle());
    let r = ui.get("/").await;
    assert!(upstream_row(&r.body, "docker.io").contains(r#"<td class="tags">3</td>"#));
}

/// ops may pull everything, dev ghcr.io/** only, anonymous callers docker.io/**.
fn mirror_auth() -> (Arc<Authenticator>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htpasswd");
    let lines = ["ops", "dev"].map(|u| htpasswd_line(u, &format!("{u}-pw"), 4).unwrap());
    std::fs::write(&path, lines.join("\n")).unwrap();
    let rule = |user: &str, repos: &str| AccessRule {
        users: vec![user.to_owned()],
        repositories: vec![repos.to_owned()],
        actions: vec![Action::Pull],
    };
    let policy = Policy {
        anonymous_pull: vec!["docker.io/**".into()],
        rules: Some(vec![rule("ops", "**"), rule("dev", "ghcr.io/**")]),
        pull_only: vec![],
    };
    let auth = Authenticator::load("test".into(), &path, policy).unwrap();
    (Arc::new(auth), dir)
}

#[tokio::test]
async fn hit_ratios_only_for_viewers_who_may_pull_everything() {
    let (ui, _, metrics) = Ui::mirror_on(Arc::new(MemoryDriver::new()), Some(mirror_auth())).await;
    ui.image("docker.io/library/alpine", &["1"]).await;
    ui.image("ghcr.io/org/tool", &["1"]).await;
    ProxyMetrics::count(&metrics.misses, "ghcr.io", "manifest", 3);
    let basic = |user: &str| {
        let pair = format!("{user}:{user}-pw");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let anonymous = ui.get("/").await;
    let dev = ui.get_as("/", &[("authorization", &basic("dev"))]).await;
    for (who, r) in [("anonymous", &anonymous), ("dev", &dev)] {
        assert_eq!(r.status, StatusCode::OK, "{who}");
        assert!(r.has(r#"<table id="upstreams">"#), "{who}: {}", r.body);
        assert!(
            !r.has(r#"id="hit-ratio""#) && !r.has("hit-ratio") && !r.has("Hit ratio"),
            "{who}: {}",
            r.body
        );
    }
    assert!(upstream_row(&dev.body, "ghcr.io").contains(r#"<td class="repositories">1</td>"#));
    let ops = ui.get_as("/", &[("authorization", &basic("ops"))]).await;
    assert!(
        ops.has(r#"<p id="hit-ratio">Hit ratio: 0% (0 of 3)</p>"#),
        "{}",
        ops.body
    );
    assert!(upstream_row(&ops.body, "ghcr.io").contains(r#"<td class="hit-ratio">"#));
}
