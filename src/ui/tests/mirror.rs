//! A mirror's page: what is cached per upstream, its hit ratios, and no deleting.

use axum::http::StatusCode;

use super::support::Ui;
use crate::content::{BlobWant, Store};
use crate::proxy::metrics::ProxyMetrics;

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
