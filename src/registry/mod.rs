//! The HTTP API: OCI Distribution v1.1 and Docker Registry HTTP API V2. One wildcard
//! route under `/v2/` is parsed by [`crate::oci::path`] and dispatched to one module per
//! API area. Handlers only translate HTTP to [`crate::content`] calls and back.

mod access;
mod blobs;
pub mod error;
pub mod http;
mod listing;
mod manifests;
pub mod metrics;
mod search;
#[cfg(test)]
mod tests;
mod uploads;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures::{StreamExt, TryStreamExt};
use tracing::Instrument;

use crate::auth::Authenticator;
use crate::content::{ContentError, Store};
use crate::oci::{NameError, Route, RouteError, path};
use access::Caller;
use error::ApiError;
use http::{API_VERSION, OCI_NAMESPACE, UrlBase};

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The registry's content: local, or the pull-through cache in front of it.
    pub store: Arc<dyn Store>,
    pub urls: UrlBase,
    /// `None` when `auth` is not configured: everyone may do everything.
    pub auth: Option<Arc<Authenticator>>,
}

type ApiResult = Result<Response, ApiError>;

/// A request without its body: method, URI and headers, shareable across awaits.
pub type Head = axum::http::Request<()>;

/// The health check path (the kubelet's probes). Its requests are logged at debug, not in
/// the info-level access log, which would otherwise get a line every few seconds.
pub const HEALTH_PATH: &str = "/healthz";

/// Builds the registry's HTTP application.
pub fn router(state: AppState) -> Router {
    router_with_pages(state, Router::new())
}

/// The registry's HTTP application with `pages` (the web UI, see [`crate::ui`]) served beside
/// the API under the same access log; what `pages` does not route gets the API's 404.
pub fn router_with_pages(state: AppState, pages: Router) -> Router {
    Router::new()
        .route("/v2", any(v2_entry))
        .route("/v2/", any(v2_entry))
        .route("/v2/{*rest}", any(v2_entry))
        .route("/v1/_ping", get(search::ping))
        .route("/v1/search", get(search::search))
        .route(HEALTH_PATH, get(|| async { "ok" }))
        .fallback(|| async { ApiError::Route(crate::oci::RouteError::NotFound) })
        .with_state(state)
        .merge(pages)
        .layer(middleware::from_fn(access_log))
}

/// Logs one access line per request, inside a span carrying the method and URI; health
/// checks that succeed are logged at debug only.
async fn access_log(req: Request, next: Next) -> Response {
    let span = tracing::info_span!("request", method = %req.method(), uri = %req.uri());
    let health = req.uri().path() == HEALTH_PATH;
    let started = Instant::now();
    let resp = next.run(req).instrument(span.clone()).await;
    let (status, ms) = (resp.status().as_u16(), started.elapsed().as_millis() as u64);
    span.in_scope(|| {
        if health && resp.status().is_success() {
            tracing::debug!(target: "dockyard::access", status, ms);
        } else {
            tracing::info!(target: "dockyard::access", status, ms);
        }
    });
    resp
}

async fn v2_entry(State(state): State<AppState>, req: Request) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let (mut parts, body) = req.into_parts();
    http::fill_host(&mut parts);
    let declares_body = declares_body(&parts.headers);
    let (body, finished) = track_end(body);
    let head = Head::from_parts(parts, ());
    let mut resp = handle(&state, &head, body, client)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    resp.headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    // A response sent before the request body was read to its end (a refusal, an invalid
    // digest, an oversized manifest) leaves unread bytes on the connection: tell the client
    // not to reuse it, rather than have its next request fail.
    if declares_body && !finished.load(Ordering::Acquire) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

fn declares_body(headers: &axum::http::HeaderMap) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    length.is_some_and(|n| n > 0) || headers.contains_key(header::TRANSFER_ENCODING)
}

/// Wraps a body so that reading it to its end sets the returned flag.
fn track_end(body: Body) -> (Body, Arc<AtomicBool>) {
    let finished = Arc::new(AtomicBool::new(false));
    let flag = finished.clone();
    let mut inner = body.into_data_stream();
    let stream = futures::stream::poll_fn(move |cx| {
        let next = inner.poll_next_unpin(cx);
        if let std::task::Poll::Ready(None) = next {
            flag.store(true, Ordering::Release);
        }
        next
    });
    (Body::from_stream(stream), finished)
}

/// Authenticates, parses the route, authorizes, then dispatches.
async fn handle(state: &AppState, head: &Head, body: Body, client: Option<IpAddr>) -> ApiResult {
    let caller = Caller::authenticate(state.auth.as_ref(), head, client).await?;
    let rest = head.uri().path().strip_prefix("/v2").unwrap_or("");
    let route = match path::parse(rest.strip_prefix('/').unwrap_or(rest)) {
        Ok(route) => route,
        Err(e) => {
            caller.require_any()?;
            return Err(match e {
                // A reference that is not a valid tag names no manifest: reads get 404, pushes 400.
                RouteError::Reference(NameError::Tag(tag)) if head.method() != Method::PUT => {
                    ApiError::Content(ContentError::ManifestUnknown(tag))
                }
                e => e.into(),
            });
        }
    };
    // containerd's `?ns=<host>` names the registry the client asked for: a mirror routes by
    // it (and the answer echoes it); a registry ignores it.
    let ns = query(head)
        .into_iter()
        .find(|(k, _)| k == "ns")
        .map(|(_, v)| v);
    let route = route.map_name(|name| state.store.local_name(name, ns.as_deref()))?;
    caller.authorize(&route, head.method())?;
    let mut resp = dispatch(state, route, head, body, &caller).await?;
    if let Some(ns) = ns.and_then(|ns| HeaderValue::from_str(&ns).ok()) {
        resp.headers_mut().insert(OCI_NAMESPACE, ns);
    }
    Ok(resp)
}

async fn dispatch(
    state: &AppState,
    route: Route,
    req: &Head,
    body: Body,
    caller: &Caller,
) -> ApiResult {
    let method = req.method().clone();
    let not_allowed = || Err(ApiError::MethodNotAllowed(method.to_string()));
    match route {
        Route::Base => match method {
            Method::GET | Method::HEAD => {
                Ok(([(header::CONTENT_TYPE, "application/json")], "{}").into_response())
            }
            _ => not_allowed(),
        },
        Route::Catalog => match method {
            Method::GET => listing::catalog(state, req, caller).await,
            _ => not_allowed(),
        },
        Route::Tags { name } => match method {
            Method::GET => listing::tags(state, &name, req).await,
            _ => not_allowed(),
        },
        Route::Referrers { name, digest } => match method {
            Method::GET => listing::referrers(state, &name, &digest, req).await,
            _ => not_allowed(),
        },
        Route::Manifest { name, reference } => match method {
            Method::GET | Method::HEAD => manifests::get(state, &name, &reference, req).await,
            Method::PUT => manifests::put(state, &name, &reference, req, body).await,
            Method::DELETE => manifests::delete(state, &name, &reference).await,
            _ => not_allowed(),
        },
        Route::Blob { name, digest } => match method {
            Method::GET | Method::HEAD => blobs::get(state, &name, &digest, req).await,
            Method::DELETE => blobs::delete(state, &name, &digest).await,
            _ => not_allowed(),
        },
        Route::UploadStart { name } => match method {
            Method::POST => uploads::start(state, &name, req, body, caller).await,
            _ => not_allowed(),
        },
        Route::Upload { name, id } => match method {
            Method::GET | Method::HEAD => uploads::status(state, &name, &id, req).await,
            Method::PATCH => uploads::patch(state, &name, &id, req, body).await,
            Method::PUT => uploads::put(state, &name, &id, req, body).await,
            Method::DELETE => uploads::cancel(state, &name, &id).await,
            _ => not_allowed(),
        },
    }
}

/// The request body as the content layer consumes it.
fn body_stream(body: Body) -> crate::content::Body {
    body.into_data_stream().map_err(io::Error::other).boxed()
}

/// Query parameters, decoded.
fn query(req: &Head) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    Some((decode(k)?, decode(v)?))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn decode(s: &str) -> Option<String> {
    path::percent_decode(&s.replace('+', " "))
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}
