//! The reading pages: the repository list (and its instant-search fragment) from the name
//! index, a repository's tags with their summaries, and one manifest in detail. Everything
//! is filtered by what the viewer may pull; what they may not is "not found".

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::StreamExt;

use super::detail::{self, Config};
use super::pages::{
    ListPage, ManifestPage, ReferrerRow, RepoPage, Results, ResultsFragment, TagRow, human_size,
    render, timestamp,
};
use super::summary::read_config;
use super::viewer::{Viewer, request_host};
use super::{PER_PAGE, UiError, UiState, html};
use crate::auth::Action;
use crate::oci::{Reference, RepoName, Tag};

/// How long a page waits for the name index's first load before saying so.
const INDEX_WAIT: Duration = Duration::from_secs(10);
/// Tag summaries read at once for a repository page.
const SUMMARIES_AT_ONCE: usize = 8;
/// The highest page number honoured.
const MAX_PAGE: usize = 1_000_000;

/// Decoded query parameters (`+` is a space).
pub(super) fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| crate::oci::path::percent_decode(&s.replace('+', " "));
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

pub(super) fn param(params: &[(String, String)], key: &str) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// The 1-based `page` parameter; anything else is page 1.
pub(super) fn page_param(query: Option<&str>) -> usize {
    param(&query_params(query), "page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, MAX_PAGE)
}

/// `/`: the repositories, searched by `?q=`.
pub(super) async fn list(State(ui): State<UiState>, req: Request) -> Response {
    let (viewer, parts) = match ui.begin(req).await {
        Ok(begun) => begun,
        Err(resp) => return resp,
    };
    let result = async {
        let results = results(&ui, &viewer, parts.uri.query()).await?;
        let mirror = super::mirror::view(&ui, &viewer).await;
        let chrome = ui.chrome(&viewer, "Repositories");
        let page = ListPage {
            chrome: &chrome,
            results,
            mirror,
        };
        Ok(html(StatusCode::OK, render(&page)))
    }
    .await;
    ui.finish(&viewer, result)
}

/// `/-/search`: the results part of `/`, for instant search.
pub(super) async fn search(State(ui): State<UiState>, req: Request) -> Response {
    let (viewer, parts) = match ui.begin(req).await {
        Ok(begun) => begun,
        Err(resp) => return resp,
    };
    let result = results(&ui, &viewer, parts.uri.query())
        .await
        .map(|results| html(StatusCode::OK, render(&ResultsFragment { results })));
    // The page that asked shows the flash, not this fragment: leave it alone.
    let mut viewer = viewer;
    viewer.flash = None;
    ui.finish(&viewer, result)
}

async fn results(ui: &UiState, viewer: &Viewer, query: Option<&str>) -> Result<Results, UiError> {
    if viewer.must_sign_in() {
        return Err(UiError::SignIn);
    }
    let names = ui.0.content.names();
    if tokio::time::timeout(INDEX_WAIT, names.wait_ready())
        .await
        .is_err()
    {
        return Err(UiError::Unavailable(
            "The registry is still reading its repository names; try again in a moment.".to_owned(),
        ));
    }
    let params = query_params(query);
    let q = param(&params, "q").unwrap_or_default().trim().to_owned();
    let page = page_param(query);
    let offset = (page - 1).saturating_mul(PER_PAGE);
    let found = names.search(&q, offset, PER_PAGE, |n| viewer.may(Action::Pull, n));
    Ok(Results::new(&q, page, PER_PAGE, found.total, found.names))
}

/// The registry host in pull commands: the one the browser used.
fn pull_host(headers: &HeaderMap) -> String {
    request_host(headers).unwrap_or_else(|| "localhost".to_owned())
}

/// `/r/<name>`: a page of tags.
pub(super) async fn repository(
    ui: &UiState,
    viewer: &Viewer,
    headers: &HeaderMap,
    name: &RepoName,
    page: usize,
) -> Result<Response, UiError> {
    if !viewer.may(Action::Pull, name.as_str()) {
        return Err(UiError::NotFound);
    }
    // One listing; only the tags on this page are resolved (a stale tag directory shows
    // without a digest, as a tag whose manifest cannot be read).
    let tags = ui.0.content.tag_names(name).await?;
    let total = tags.len();
    let offset = (page - 1).saturating_mul(PER_PAGE);
    let host = pull_host(headers);
    // Futures collected first: a stream holding the closure would not be `Send` for axum.
    let reads: Vec<_> = tags
        .into_iter()
        .skip(offset)
        .take(PER_PAGE)
        .map(|tag| tag_row(ui, name, tag, &host))
        .collect();
    let rows: Vec<TagRow> = futures::stream::iter(reads)
        .buffered(SUMMARIES_AT_ONCE)
        .collect()
        .await;
    let link = |n: usize| format!("/r/{name}?page={n}");
    let chrome = ui.chrome(viewer, name.as_str());
    let page = RepoPage {
        chrome: &chrome,
        name: name.to_string(),
        tag_count_text: match total {
            1 => "1 tag".to_owned(),
            n => format!("{n} tags"),
        },
        tags: rows,
        can_delete: ui.deletes() && viewer.may(Action::Delete, name.as_str()),
        prev: (page > 1).then(|| link(page - 1)),
        next: (page.saturating_mul(PER_PAGE) < total).then(|| link(page + 1)),
    };
    Ok(html(StatusCode::OK, render(&page)))
}

async fn tag_row(ui: &UiState, name: &RepoName, tag: Tag, host: &str) -> TagRow {
    let content = &ui.0.content;
    let mut row = TagRow {
        pull: format!("{host}/{name}:{tag}"),
        tag: tag.to_string(),
        digest: String::new(),
        size: "—".to_owned(),
        bytes: None,
        created: None,
        platforms: String::new(),
    };
    let digest = match content.resolve(name, &Reference::Tag(tag)).await {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(repository = %name, tag = %row.tag, error = %e, "tag not shown in full");
            return row;
        }
    };
    row.digest = digest.to_string();
    match ui.0.summaries.of(content, name, &digest).await {
        Ok(s) => {
            row.bytes = Some(s.total);
            row.size = s.total_text();
            row.created = s.created.as_deref().map(timestamp);
            row.platforms = s.platforms.join(", ");
        }
        Err(e) => {
            tracing::warn!(repository = %name, digest = %digest, error = %e, "cannot summarise a manifest")
        }
    }
    row
}

/// `/r/<name>/-/<reference>`: one manifest.
pub(super) async fn reference(
    ui: &UiState,
    viewer: &Viewer,
    headers: &HeaderMap,
    name: &RepoName,
    reference: &Reference,
) -> Result<Response, UiError> {
    if !viewer.may(Action::Pull, name.as_str()) {
        return Err(UiError::NotFound);
    }
    let content = &ui.0.content;
    let m = content.get_manifest(name, reference).await?;
    let summary = ui.0.summaries.of(content, name, &m.digest).await.ok();
    let config = detail::read_manifest(&m.bytes).and_then(|raw| raw.config);
    let config_bytes = match &config {
        Some(c) if detail::is_image_config(&c.media_type) => read_config(content, name, c).await,
        _ => None,
    };
    let config_state = match (&config, &config_bytes) {
        (None, _) => Config::None,
        (Some(_), Some(bytes)) => Config::Read(bytes),
        (Some(_), None) => Config::Unavailable,
    };
    let d = detail::detail(
        &m.digest.to_string(),
        &m.media_type,
        &m.bytes,
        config_state,
        summary.as_ref().map(|s| s.total_text()),
        &summary
            .as_ref()
            .map(|s| s.children.clone())
            .unwrap_or_default(),
    );
    let referrers = content
        .referrers(name, &m.digest, None)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(repository = %name, digest = %m.digest, error = %e, "cannot list referrers");
            Vec::new()
        });
    let referrers = referrers
        .into_iter()
        .map(|r| ReferrerRow {
            artifact_type: r.artifact_type.unwrap_or(r.media_type),
            digest: r.digest.to_string(),
            bytes: r.size,
            size: human_size(r.size),
        })
        .collect();
    let host = pull_host(headers);
    let (tag, pull) = match reference {
        Reference::Tag(t) => (Some(t.to_string()), format!("{host}/{name}:{t}")),
        Reference::Digest(d) => (None, format!("{host}/{name}@{d}")),
    };
    let chrome = ui.chrome(viewer, format!("{name} {reference}"));
    let page = ManifestPage {
        chrome: &chrome,
        name: name.to_string(),
        reference: reference.to_string(),
        tag,
        pull,
        can_delete: ui.deletes() && viewer.may(Action::Delete, name.as_str()),
        d,
        referrers,
    };
    Ok(html(StatusCode::OK, render(&page)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters() {
        let p = query_params(Some("q=team%2Fapp+x&page=3&flag"));
        assert_eq!(param(&p, "q").as_deref(), Some("team/app x"));
        assert_eq!(param(&p, "flag").as_deref(), Some(""));
        assert_eq!(page_param(Some("page=3")), 3);
        assert_eq!(page_param(Some("page=0")), 1);
        assert_eq!(page_param(Some("page=-2")), 1);
        assert_eq!(page_param(Some("page=99999999999999999999")), 1);
        assert_eq!(page_param(None), 1);
    }
}
