//! Pages stay cheap with many tags and many children: a repository page reads only its own
//! tags, untag and delete find a manifest's tags with one listing, an index reads at most
//! [`CHILDREN_READ`] children, the summary cache is bounded by size, and a summary cached
//! from one repository is never shown in another.

use std::sync::Arc;

use axum::http::StatusCode;
use bytes::Bytes;

use super::probe::Probe;
use super::support::{OCI_INDEX, OCI_MANIFEST, Ui};
use crate::oci::{Algorithm, Digest, Reference, RepoName};
use crate::storage::{Driver, layout};
use crate::ui::summary::{CHILDREN_READ, Summaries, Summary};

/// The `<tr>` of tag `tag` on a repository page.
fn tag_row(body: &str, tag: &str) -> String {
    let start = body
        .find(&format!(r#"<tr class="tag" data-tag="{tag}">"#))
        .unwrap_or_else(|| panic!("no row for {tag} in {body}"));
    let end = start + body[start..].find("</tr>").unwrap();
    body[start..end].to_owned()
}

#[tokio::test]
async fn a_repository_page_resolves_only_the_tags_it_shows() {
    let probe = Probe::new();
    let ui = Ui::on(probe.clone() as Arc<dyn Driver>).await;
    let tags: Vec<String> = (0..120).map(|i| format!("t{i:03}")).collect();
    let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let digest = ui.image("app", &tag_refs).await;
    // A tag directory without a current link (a crash, a partial copy).
    let name: RepoName = "app".parse().unwrap();
    let stale = format!(
        "{}/zz-stale/index/sha256/{}/link",
        layout::tags_dir(&name),
        digest.hex()
    );
    probe
        .put_content(&stale, Bytes::from(digest.to_string()))
        .await
        .unwrap();

    probe.reset();
    let page = ui.get("/r/app").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.has(r#"<p id="tag-count">121 tags</p>"#),
        "{}",
        page.body
    );
    assert!(page.has(r#"data-tag="t049""#) && !page.has(r#"data-tag="t050""#));
    assert_eq!(
        probe.tag_reads(),
        50,
        "one link read per tag shown, none more"
    );

    // The stale directory is on the last page, without a manifest.
    let last = ui.get("/r/app?page=3").await;
    let row = tag_row(&last.body, "zz-stale");
    assert!(row.contains(r#"title=""></td>"#), "{row}");
    assert!(tag_row(&last.body, "t119").contains(&digest.to_string()));
    // The API's tag list still checks every tag.
    let api = ui.get("/v2/app/tags/list").await;
    assert_eq!(api.status, StatusCode::OK);
    assert!(api.has("t119") && !api.has("zz-stale"), "{}", api.body);

    // Untag and delete find the manifest's tags with one listing and a read per tag.
    probe.reset();
    let confirm = ui.get("/r/app/-/t000/untag").await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.has("t119"));
    assert!(probe.tag_reads() <= 1 + 121, "{}", probe.tag_reads());
    probe.reset();
    let confirm = ui.get(&format!("/r/app/-/{digest}/delete")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.has("<li>t119</li>") && !confirm.has("<li>zz-stale</li>"));
    assert!(probe.tag_reads() <= 121, "{}", probe.tag_reads());
    probe.reset();
    let done = ui.post(&format!("/r/app/-/{digest}/delete"), &[], "").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(probe.tag_reads() <= 121, "{}", probe.tag_reads());
    assert!(ui.tags("app").await.is_empty());
}

#[tokio::test]
async fn an_index_reads_at_most_64_children_and_says_its_total_is_a_lower_bound() {
    let ui = Ui::new(false).await;
    let name: RepoName = "multi".parse().unwrap();
    let count = CHILDREN_READ + 6;
    let mut descriptors = Vec::new();
    let mut expected = 0u64;
    for i in 0..count {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","n":{i}}}"#);
        let d = ui.image_with("multi", &[], &config, &[i as u8; 1000]).await;
        let size = ui
            .content
            .get_manifest(&name, &Reference::Digest(d.clone()))
            .await
            .unwrap()
            .size;
        expected += if i < CHILDREN_READ {
            config.len() as u64 + 1000
        } else {
            size
        };
        descriptors.push(format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":{size},"platform":{{"architecture":"amd64","os":"linux"}}}}"#
        ));
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        descriptors.join(",")
    );
    ui.manifest("multi", &["all"], &index).await;
    let page = ui.get("/r/multi").await;
    let row = tag_row(&page.body, "all");
    assert!(
        row.contains(&format!(r#"data-bytes="{expected}">≥ "#)),
        "expected {expected}: {row}"
    );
    let detail = ui.get("/r/multi/-/all").await;
    assert!(detail.has(r#"<dd id="total-size">≥ "#), "{}", detail.body);
}

#[test]
fn the_summary_cache_is_bounded_by_its_size() {
    let cache = Summaries::default();
    for i in 0..100u32 {
        let children = (0..1000u32)
            .map(|j| (format!("sha256:{:064x}", i * 1000 + j), 1u64))
            .collect();
        let summary = Summary {
            total: 1,
            children,
            ..Summary::default()
        };
        let digest = Digest::of(Algorithm::Sha256, &i.to_le_bytes());
        cache.put(&digest, Arc::new(summary));
    }
    let (bytes, entries) = cache.footprint();
    assert!(bytes <= 8 << 20, "{bytes} bytes");
    assert!(entries > 0 && entries < 100, "{entries} entries");
}

#[tokio::test]
async fn a_child_from_another_repository_is_not_summarised_from_the_cache() {
    let ui = Ui::new(true).await;
    let config = r#"{"created":"2024-05-01T12:34:56Z","architecture":"amd64","os":"linux"}"#;
    let layer = [9u8; 5000];
    ui.image_with("a", &["v1"], config, &layer).await;
    let child = ui.image_with("b", &[], config, &layer).await;
    let b: RepoName = "b".parse().unwrap();
    let size = ui
        .content
        .get_manifest(&b, &Reference::Digest(child.clone()))
        .await
        .unwrap()
        .size;
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{child}","size":{size},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
    );
    ui.manifest("b", &["multi"], &index).await;
    // The child leaves b; a still has it, and its page caches its summary.
    ui.content
        .delete_manifest(&b, &Reference::Digest(child))
        .await
        .unwrap();
    let a = ui.get("/r/a").await;
    let full = config.len() + layer.len();
    assert!(tag_row(&a.body, "v1").contains(&format!(r#"data-bytes="{full}""#)));
    // b's index counts the child as the descriptor says, and knows no creation time.
    let page = ui.get("/r/b").await;
    let row = tag_row(&page.body, "multi");
    assert!(row.contains(&format!(r#"data-bytes="{size}""#)), "{row}");
    assert!(!row.contains("<time"), "{row}");
}
