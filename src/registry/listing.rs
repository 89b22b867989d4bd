//! Listings: `/v2/<name>/tags/list`, `/v2/_catalog` (both with `n`/`last` and `Link`),
//! and `/v2/<name>/referrers/<digest>` (with the `artifactType` filter).

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::access::Caller;
use super::error::ApiError;
use super::http::{OCI_FILTERS_APPLIED, parse_n, value};
use super::{ApiResult, AppState, Head, param, query};
use crate::auth::Action;
use crate::content::{NameIndex, paginate};
use crate::oci::manifest::OCI_INDEX;
use crate::oci::{Digest, RepoName};

/// Catalog page size when the client does not ask for one, as distribution does.
const DEFAULT_CATALOG_PAGE: usize = 100;

/// How long a catalog request waits for the name index to load at startup.
const INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

pub async fn tags(state: &AppState, name: &RepoName, req: &Head) -> ApiResult {
    let params = query(req);
    let n = parse_n(param(&params, "n"))?;
    let all = state
        .store
        .tags(name)
        .await?
        .into_iter()
        .map(|t| t.to_string())
        .collect();
    let (page, more) = paginate(all, n, param(&params, "last"));
    let body = serde_json::json!({ "name": name.as_str(), "tags": page });
    Ok(json_page(
        body,
        more.then(|| next_link(&format!("/v2/{name}/tags/list"), n, page.last())),
    ))
}

pub async fn catalog(state: &AppState, req: &Head, caller: &Caller) -> ApiResult {
    let params = query(req);
    let n = parse_n(param(&params, "n"))?.unwrap_or(DEFAULT_CATALOG_PAGE);
    let names = ready_names(state).await?;
    // Only what the caller may pull is listed.
    let (page, more) = match n {
        0 => (Vec::new(), false),
        n => names.page(param(&params, "last"), n, |r| caller.may(Action::Pull, r)),
    };
    let body = serde_json::json!({ "repositories": page });
    Ok(json_page(
        body,
        more.then(|| next_link("/v2/_catalog", Some(n), page.last())),
    ))
}

/// The name index, once it has loaded (a request at startup waits for it a while).
pub async fn ready_names(state: &AppState) -> Result<Arc<NameIndex>, ApiError> {
    let names = state.store.names();
    match tokio::time::timeout(INDEX_WAIT, names.wait_ready()).await {
        Ok(()) => Ok(names),
        Err(_) => Err(ApiError::IndexLoading),
    }
}

pub async fn referrers(
    state: &AppState,
    name: &RepoName,
    subject: &Digest,
    req: &Head,
) -> ApiResult {
    let params = query(req);
    let filter = param(&params, "artifactType");
    let manifests = state.store.referrers(name, subject, filter).await?;
    let body =
        serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    let mut resp = ([(header::CONTENT_TYPE, OCI_INDEX)], body.to_string()).into_response();
    if filter.is_some() {
        resp.headers_mut()
            .insert(OCI_FILTERS_APPLIED, value("artifactType"));
    }
    Ok(resp)
}

fn next_link(path: &str, n: Option<usize>, last: Option<&String>) -> String {
    let mut link = format!("<{path}?");
    if let Some(n) = n {
        link.push_str(&format!("n={n}&"));
    }
    link.push_str(&format!(
        "last={}>; rel=\"next\"",
        last.map(String::as_str).unwrap_or("")
    ));
    link
}

fn json_page(body: serde_json::Value, link: Option<String>) -> Response {
    let mut resp = (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(link) = link {
        resp.headers_mut().insert(header::LINK, value(link));
    }
    resp
}
