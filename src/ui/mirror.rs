//! The mirror table of `/`: per upstream, the cached repositories and tags the viewer may
//! see, the bytes cached and when they were last used, and, to a viewer who may pull every
//! repository, the hit ratio (it counts every repository's requests). Tag counts come from
//! the local content, one listing per repository, recounted in a spawned task at most every
//! [`TAG_COUNTS_FOR`]; pages meanwhile show the previous counts and never wait on storage,
//! but for the very first count.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};

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
/// Names read from the name index at a time.
const NAMES_AT_ONCE: usize = 1000;

/// Tags by repository name.
type Counts = HashMap<String, usize>;
/// A recount in flight, shared by whoever waits for it.
type Recount = Shared<BoxFuture<'static, Arc<Counts>>>;

/// Tags per cached repository, recounted at most every [`TAG_COUNTS_FOR`], one recount at a
/// time. The lock is held only to read or swap the state, never across storage calls.
#[derive(Default)]
pub(super) struct TagCounts(Mutex<CountState>);

#[derive(Default)]
struct CountState {
    /// The latest counts, and when they were counted.
    last: Option<(Instant, Arc<Counts>)>,
    /// The recount in progress.
    running: Option<Recount>,
}

impl TagCounts {
    fn lock(&self) -> MutexGuard<'_, CountState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The latest counts. Stale (or missing) counts start a recount in a spawned task unless
    /// one runs; only a page with no counts at all waits for it.
    async fn get(ui: &UiState) -> Arc<Counts> {
        let pending = {
            let mut state = ui.0.tag_counts.lock();
            let fresh = state
                .last
                .as_ref()
                .is_some_and(|(at, _)| at.elapsed() < TAG_COUNTS_FOR);
            if !fresh && state.running.is_none() {
                let recount = recount(ui.clone()).boxed().shared();
                tokio::spawn(recount.clone());
                state.running = Some(recount);
            }
            match &state.last {
                Some((_, counts)) => return counts.clone(),
                None => state.running.clone(),
            }
        };
        match pending {
            Some(recount) => recount.await,
            None => Arc::default(),
        }
    }

    /// Makes the counts stale, as if [`TAG_COUNTS_FOR`] had passed.
    #[cfg(test)]
    pub(super) fn expire(&self) {
        if let Some((at, _)) = self.lock().last.as_mut() {
            *at = Instant::now() - TAG_COUNTS_FOR;
        }
    }

    /// Recounts started so far are done.
    #[cfg(test)]
    pub(super) fn idle(&self) -> bool {
        self.lock().running.is_none()
    }
}

/// Counts the tags of every cached repository (one listing each, unchecked) and stores them.
async fn recount(ui: UiState) -> Arc<Counts> {
    let counts = Arc::new(count(&ui.0.content).await);
    let mut state = ui.0.tag_counts.lock();
    state.last = Some((Instant::now(), counts.clone()));
    state.running = None;
    counts
}

async fn count(content: &Content) -> Counts {
    let mut counts = Counts::new();
    let mut last: Option<String> = None;
    loop {
        let (names, more) = content
            .names()
            .page(last.as_deref(), NAMES_AT_ONCE, |_| true);
        let listings: Vec<_> = names
            .iter()
            .cloned()
            .map(|name| async move {
                let count = match name.parse::<RepoName>() {
                    Ok(repo) => content.tag_names(&repo).await.map_or(0, |t| t.len()),
                    Err(_) => 0,
                };
                (name, count)
            })
            .collect();
        let listed: Vec<(String, usize)> = futures::stream::iter(listings)
            .buffer_unordered(LISTINGS_AT_ONCE)
            .collect()
            .await;
        counts.extend(listed);
        last = names.last().cloned();
        if !more || last.is_none() {
            return counts;
        }
    }
}

/// The table, on a mirror.
pub(super) async fn view(ui: &UiState, viewer: &Viewer) -> Option<MirrorView> {
    let mirror = ui.0.mirror.as_ref()?;
    let counts = TagCounts::get(ui).await;
    let usage = mirror.usage(|repo| viewer.may(Action::Pull, repo.as_str()));
    let ratios = viewer.may_pull_everything();
    let mut rows: Vec<UpstreamRow> = usage
        .iter()
        .map(|u| UpstreamRow {
            host: u.host.clone(),
            repositories: 0,
            tags: 0,
            bytes: u.bytes,
            bytes_text: human_size(u.bytes),
            last_pulled: u.last_pulled.map_or_else(|| "—".to_owned(), system_time),
            hit_ratio: ratios.then(|| ratio(u.hits, u.misses)),
        })
        .collect();
    let names = ui.0.content.names();
    let mut last: Option<String> = None;
    loop {
        let (page, more) = names.page(last.as_deref(), NAMES_AT_ONCE, |n| {
            viewer.may(Action::Pull, n)
        });
        for name in &page {
            let Ok(repo) = name.parse::<RepoName>() else {
                continue;
            };
            let host = mirror.upstream_host(&repo);
            if let Some(row) = rows.iter_mut().find(|r| Some(r.host.as_str()) == host) {
                row.repositories += 1;
                row.tags += counts.get(name).copied().unwrap_or(0);
            }
        }
        last = page.last().cloned();
        if !more || last.is_none() {
            break;
        }
    }
    let hits = usage.iter().map(|u| u.hits).sum();
    let misses = usage.iter().map(|u| u.misses).sum();
    Some(MirrorView {
        hit_ratio: ratios.then(|| ratio(hits, misses)),
        upstreams: rows,
    })
}
