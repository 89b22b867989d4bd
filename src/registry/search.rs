//! Docker's v1 search, which `docker search HOST/term` uses and registry:2 never had:
//! `GET /v1/_ping` and `GET /v1/search?q=&n=&page=`, answered from the repository name
//! index with the same access rules as the catalog. The Docker engine sends Basic
//! credentials with the search when it has a login for the registry, none otherwise.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::access::Caller;
use super::error::ApiError;
use super::http::value;
use super::{AppState, Head, param, query};
use crate::auth::Action;

/// Results per page when the client does not say (the Docker engine's default).
const DEFAULT_PAGE_SIZE: usize = 25;
/// The most a page holds (Docker Hub's limit; the engine refuses more before asking).
const MAX_PAGE_SIZE: usize = 100;

#[derive(Debug, Serialize, PartialEq)]
pub struct SearchResults {
    pub num_pages: usize,
    pub num_results: usize,
    pub page_size: usize,
    pub page: usize,
    pub query: String,
    pub results: Vec<SearchResult>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct SearchResult {
    pub name: String,
    pub description: String,
    pub star_count: u64,
    pub is_official: bool,
    pub is_automated: bool,
}

/// `GET /v1/_ping`: tells the Docker engine this is a standalone registry. Answers
/// everyone (the engine pings without credentials), revealing nothing.
pub async fn ping() -> Response {
    (
        [
            (header::CONTENT_TYPE, value("application/json")),
            (header::CACHE_CONTROL, value("no-cache")),
        ],
        [("X-Docker-Registry-Standalone", "true")],
        "{\"standalone\":true}",
    )
        .into_response()
}

/// `GET /v1/search`.
pub async fn search(State(state): State<AppState>, req: Request) -> Response {
    let client: Option<IpAddr> = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let (parts, _) = req.into_parts();
    let head = Head::from_parts(parts, ());
    answer(&state, &head, client)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn answer(
    state: &AppState,
    head: &Head,
    client: Option<IpAddr>,
) -> Result<Response, ApiError> {
    let caller = Caller::authenticate(state.auth.as_ref(), head, client).await?;
    caller.require_any()?;
    let params = query(head);
    let (page_size, page) = page_params(param(&params, "n"), param(&params, "page"))?;
    let q = param(&params, "q").unwrap_or("").trim().to_owned();
    let names = super::listing::ready_names(state).await?;
    let found = names.search(&q, (page - 1) * page_size, page_size, |r| {
        caller.may(Action::Pull, r)
    });
    let body = SearchResults {
        num_pages: found.total.div_ceil(page_size),
        num_results: found.total,
        page_size,
        page,
        query: q,
        results: found.names.into_iter().map(result).collect(),
    };
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&body).unwrap_or_default(),
    )
        .into_response())
}

fn result(name: String) -> SearchResult {
    SearchResult {
        name,
        description: String::new(),
        star_count: 0,
        is_official: false,
        is_automated: false,
    }
}

/// Page size (`n`, 1..=100, default 25) and 1-based page number (`page`, default 1).
fn page_params(n: Option<&str>, page: Option<&str>) -> Result<(usize, usize), ApiError> {
    let size = match n.filter(|n| !n.is_empty()) {
        None => DEFAULT_PAGE_SIZE,
        Some(n) => match n.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                return Err(ApiError::PaginationInvalid(format!(
                    "n must be a number from 1 to {MAX_PAGE_SIZE}, got {n:?}"
                )));
            }
        },
    };
    let page = match page.filter(|p| !p.is_empty()) {
        None => 1,
        Some(p) => match p.parse::<usize>() {
            Ok(p) if p >= 1 && p.checked_mul(size).is_some() => p,
            _ => {
                return Err(ApiError::PaginationInvalid(format!(
                    "page must be a number from 1, got {p:?}"
                )));
            }
        },
    };
    Ok((size, page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_parameters_have_docker_defaults_and_limits() {
        assert_eq!(page_params(None, None).unwrap(), (25, 1));
        assert_eq!(page_params(Some("100"), Some("3")).unwrap(), (100, 3));
        for (n, page) in [
            (Some("0"), None),
            (Some("101"), None),
            (Some("x"), None),
            (None, Some("0")),
        ] {
            let e = page_params(n, page).unwrap_err();
            assert_eq!(e.code().name, "PAGINATION_NUMBER_INVALID", "{n:?} {page:?}");
        }
    }

    #[test]
    fn results_have_the_fields_the_docker_engine_decodes() {
        let body = serde_json::to_value(result("team/app".into())).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"name": "team/app", "description": "", "star_count": 0, "is_official": false, "is_automated": false})
        );
    }
}
