//! The mirror table of `/`: per upstream, the cached repositories and tags the viewer may
//! see, the bytes cached and when they were last used, and the hit ratio. Tag counts come
//! from the local content (listing every repository's tags) and are kept for a while.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::UiState;
use super::pages::{MirrorView, UpstreamRow, human_size, ratio, system_time};
use super::viewer::Viewer;
use crate::auth::Action;
use crate::content::Content;
use crate::oci::RepoName;

/// How long tag counts are reused.
const TAG_COUNTS_FOR: Duration = Duration::from_secs(30);
/// Repositories whose tags are listed at once.
const LISTINGS_AT_ONCE: usize = 16;

/// Tags per cached repository, recounted at most every [`TAG_COUNTS_FOR`].
#[derive(Default)]
pub(super) struct TagCounts(tokio::sync::Mutex<Option<Counted>>);

/// Tag counts by repository, and when they were counted.
type Counted = (Instant, Arc<HashMap<String, usize>>);

impl TagCounts {
    async fn get(&self, content: &Content, names: &[String]) -> Arc<HashMap<String, usize>> {
        let mut cached = self.0.lock().await;
        if let Some((at, counts)) = cached.as_ref()
            && at.elapsed() < TAG_COUNTS_FOR
        {
            return counts.clone();
        }
        let reads: Vec<_> = names
            .iter()
            .cloned()
            .map(|name| async move {
                let count = match name.parse::<RepoName>() {
                    Ok(repo) => content.tags(&repo).await.map_or(0, |t| t.len()),
                    Err(_) => 0,
                };
                (name, count)
            })
            .collect();
        let counts: HashMap<String, usize> = futures::stream::iter(reads)
            .buffer_unordered(LISTINGS_AT_ONCE)
            .collect()
            .await;
        let counts = Arc::new(counts);
        *cached = Some((Instant::now(), counts.clone()));
        counts
    }
}

/// The table, on a mirror.
pub(super) async fn view(ui: &UiState, viewer: &Viewer) -> Option<MirrorView> {
    let mirror = ui.0.mirror.as_ref()?;
    let (names, _) = ui.0.content.names().page(None, usize::MAX, |_| true);
    let counts = ui.0.tag_counts.get(&ui.0.content, &names).await;
    let usage = mirror.usage(|repo| viewer.may(Action::Pull, repo.as_str()));
    let mut rows: Vec<UpstreamRow> = usage
        .iter()
        .map(|u| UpstreamRow {
            host: u.host.clone(),
            repositories: 0,
            tags: 0,
            bytes: u.bytes,
            bytes_text: human_size(u.bytes),
            last_pulled: u.last_pulled.map_or_else(|| "—".to_owned(), system_time),
            hit_ratio: ratio(u.hits, u.misses),
        })
        .collect();
    for name in names.iter().filter(|n| viewer.may(Action::Pull, n)) {
        let Ok(repo) = name.parse::<RepoName>() else {
            continue;
        };
        let host = mirror.upstream_host(&repo);
        if let Some(row) = rows.iter_mut().find(|r| Some(r.host.as_str()) == host) {
            row.repositories += 1;
            row.tags += counts.get(name).copied().unwrap_or(0);
        }
    }
    let hits = usage.iter().map(|u| u.hits).sum();
    let misses = usage.iter().map(|u| u.misses).sum();
    Some(MirrorView {
        hit_ratio: ratio(hits, misses),
        upstreams: rows,
    })
}
