//! The built-in web UI, served at `/` beside the API on the registry's own origin: the
//! repositories (searched through the name index), a repository's tags, a manifest's config,
//! layers, platforms and referrers, untag and delete with confirmation, and sign-in with the
//! htpasswd users. Server-rendered ([`pages`]), with `app.js` as progressive enhancement
//! (instant search, copy buttons) and a Content-Security-Policy that allows no inline code.
//!
//! It reads the local content only (a mirror's cache, never its upstreams), and obeys the
//! API's authentication and access policy: a repository the viewer may not pull is shown as
//! missing. `serve` builds the [`router`] when `ui.enabled`, and `registry::router_with_pages`
//! serves it.

mod browse;
mod detail;
mod login;
mod manage;
mod mirror;
mod pages;
mod session;
mod summary;
#[cfg(test)]
mod tests;
mod viewer;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest as _, Sha256};

use crate::auth::{AuthError, Authenticator};
use crate::content::{Content, ContentError};
use crate::oci::{Digest, Reference, RepoName, Tag};
use pages::{Chrome, MessagePage, render};
use session::{FLASH_COOKIE, SESSION_COOKIE, SessionKey, set_cookie};
use viewer::Viewer;

/// Repositories and tags per page.
const PER_PAGE: usize = 50;

const APP_CSS: &str = include_str!("static/app.css");
const APP_JS: &str = include_str!("static/app.js");
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The assets' version in their URLs: a hash of their content.
static ASSETS: LazyLock<String> = LazyLock::new(|| {
    let hash = Sha256::new()
        .chain_update(APP_CSS)
        .chain_update(APP_JS)
        .finalize();
    hex::encode(&hash[..6])
});

/// What the UI's handlers share.
#[derive(Clone)]
pub struct UiState(Arc<Inner>);

struct Inner {
    /// The local content (a mirror's cache).
    content: Content,
    mirror: Option<Arc<crate::proxy::Mirror>>,
    auth: Option<Arc<Authenticator>>,
    key: SessionKey,
    /// Sessions signed out on this process.
    revoked: session::Revoked,
    /// Cookies get `Secure` (the server terminates TLS; behind a proxy, see
    /// `viewer::forwarded_https`).
    secure: bool,
    summaries: summary::Summaries,
    tag_counts: mirror::TagCounts,
}

impl UiState {
    /// `secret` is `http.secret` (session cookies then survive restarts and work across
    /// replicas); `tls` whether the server itself serves HTTPS.
    pub fn new(
        content: Content,
        mirror: Option<Arc<crate::proxy::Mirror>>,
        auth: Option<Arc<Authenticator>>,
        secret: Option<&str>,
        tls: bool,
    ) -> UiState {
        UiState(Arc::new(Inner {
            content,
            mirror,
            auth,
            key: SessionKey::new(secret),
            revoked: session::Revoked::default(),
            secure: tls,
            summaries: summary::Summaries::default(),
            tag_counts: mirror::TagCounts::default(),
        }))
    }

    /// Whether deleting is possible at all here (the viewer's rights aside).
    fn deletes(&self) -> bool {
        let options = &self.0.content.options;
        options.delete_enabled && !options.read_only && self.0.mirror.is_none()
    }

    fn chrome(&self, viewer: &Viewer, title: impl Into<String>) -> Chrome {
        Chrome {
            title: title.into(),
            user: viewer.user().map(str::to_owned),
            sign_in: viewer.may_sign_in(),
            sign_out: viewer.may_sign_out(),
            flash: viewer.flash.clone(),
            assets: ASSETS.as_str(),
        }
    }

    /// Splits a request and identifies its viewer; a refusal is the response. HTTP/2 carries
    /// the host in `:authority` only: it is copied to `Host` for pull commands and origin checks.
    async fn begin(&self, req: Request) -> Result<(Viewer, Parts), Response> {
        self.begin_with_body(req)
            .await
            .map(|(v, parts, _)| (v, parts))
    }

    async fn begin_with_body(&self, req: Request) -> Result<(Viewer, Parts, Body), Response> {
        let (mut parts, body) = req.into_parts();
        crate::registry::http::fill_host(&mut parts);
        let client = viewer::client_of(&parts.extensions);
        let sessions = (&self.0.key, &self.0.revoked);
        match Viewer::identify(self.0.auth.as_ref(), sessions, &parts.headers, client).await {
            Ok(mut viewer) => {
                viewer.secure = self.0.secure || viewer::forwarded_https(&parts.headers);
                Ok((viewer, parts, body))
            }
            Err(e) => {
                let error = match e {
                    AuthError::TooManyAttempts { retry_after } => UiError::TooMany(retry_after),
                    _ => UiError::BadCredentials,
                };
                let anonymous = Viewer::anonymous(self.0.auth.clone());
                Err(self.error_page(&anonymous, error))
            }
        }
    }

    /// The response, or the error page, with the cookies the viewer needs cleared.
    fn finish(&self, viewer: &Viewer, result: Result<Response, UiError>) -> Response {
        let mut resp = result.unwrap_or_else(|e| self.error_page(viewer, e));
        let sets = |name: &str| {
            resp.headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .any(|v| v.as_bytes().starts_with(format!("{name}=").as_bytes()))
        };
        let (sets_flash, sets_session) = (sets(FLASH_COOKIE), sets(SESSION_COOKIE));
        if viewer.flash.is_some() && !sets_flash {
            self.set_cookie(
                &mut resp,
                &set_cookie(FLASH_COOKIE, "", None, viewer.secure),
            );
        }
        if viewer.stale_session && !sets_session {
            self.set_cookie(
                &mut resp,
                &set_cookie(SESSION_COOKIE, "", None, viewer.secure),
            );
        }
        resp
    }

    fn set_cookie(&self, resp: &mut Response, value: &str) {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }

    fn error_page(&self, viewer: &Viewer, error: UiError) -> Response {
        let (status, heading, id, text) = match error {
            UiError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "not-found",
                "There is no such repository, tag or manifest here, or you may not see it."
                    .to_owned(),
            ),
            UiError::SignIn => (
                StatusCode::UNAUTHORIZED,
                "Sign in",
                "sign-in-required",
                "This registry shows its repositories to signed-in users only.".to_owned(),
            ),
            UiError::BadCredentials => (
                StatusCode::UNAUTHORIZED,
                "Wrong credentials",
                "bad-credentials",
                "The user name or password sent with this request is wrong.".to_owned(),
            ),
            UiError::TooMany(retry) => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                "too-many",
                format!(
                    "Too many failed sign-ins; try again in {} s.",
                    retry.as_secs().max(1)
                ),
            ),
            UiError::Denied(why) => (StatusCode::FORBIDDEN, "Not allowed", "denied", why),
            UiError::BadRequest(why) => {
                (StatusCode::BAD_REQUEST, "Bad request", "bad-request", why)
            }
            UiError::Unavailable(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Not ready",
                "unavailable",
                why,
            ),
            UiError::Internal(e) => {
                tracing::error!(error = %e, "web UI request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Error",
                    "error",
                    "The registry could not read its storage; see its log.".to_owned(),
                )
            }
        };
        let chrome = self.chrome(viewer, heading);
        let page = MessagePage {
            chrome: &chrome,
            heading: heading.to_owned(),
            id,
            text,
            sign_in: status == StatusCode::UNAUTHORIZED
                || (status == StatusCode::NOT_FOUND && viewer.may_sign_in()),
        };
        html(status, render(&page))
    }
}

/// Why a page cannot be shown.
#[derive(Debug)]
enum UiError {
    /// Missing, or not visible to the viewer: the same page either way.
    NotFound,
    /// Anonymous, and anonymous viewers may see nothing.
    SignIn,
    BadCredentials,
    TooMany(Duration),
    Denied(String),
    BadRequest(String),
    Unavailable(String),
    Internal(ContentError),
}

impl From<ContentError> for UiError {
    fn from(e: ContentError) -> UiError {
        match e {
            ContentError::ManifestUnknown(_)
            | ContentError::NameUnknown(_)
            | ContentError::BlobUnknown(_) => UiError::NotFound,
            ContentError::DeleteDisabled | ContentError::ReadOnly | ContentError::Mirror => {
                UiError::Denied(e.to_string())
            }
            e => UiError::Internal(e),
        }
    }
}

/// An HTML response.
fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// A `303 See Other` to `location`.
fn see_other(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// The UI's routes, for `registry::router_with_pages`.
pub fn router(state: UiState) -> Router {
    Router::new()
        .route("/", get(browse::list))
        .route("/-/search", get(browse::search))
        .route("/-/login", get(login::form).post(login::submit))
        .route("/-/logout", post(login::logout))
        .route("/-/static/{file}", get(asset))
        .route("/r/{*rest}", get(repository_get).post(repository_post))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// The headers every UI response carries.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// `app.css` and `app.js`: cached for a year when asked for by their current version.
async fn asset(axum::extract::Path(file): axum::extract::Path<String>, req: Request) -> Response {
    let (body, content_type) = match file.as_str() {
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let versioned = req.uri().query() == Some(&format!("v={}", ASSETS.as_str()));
    let cache = if versioned {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
        ],
        Body::from(body),
    )
        .into_response()
}

/// What a `/r/...` path names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Repository(RepoName),
    Reference(RepoName, Reference),
    Untag(RepoName, Tag),
    Delete(RepoName, Digest),
}

/// Parses the part of a path after `/r/`: `<name>`, `<name>/-/<reference>`, and
/// `<name>/-/<tag>/untag` or `<name>/-/<digest>/delete`. No name component is `-`.
fn parse_target(rest: &str) -> Option<Target> {
    let rest = crate::oci::path::percent_decode(rest)?;
    let (name, tail) = match rest.split_once("/-/") {
        Some((name, tail)) => (name, Some(tail)),
        None => (rest.trim_end_matches('/'), None),
    };
    let name: RepoName = name.parse().ok()?;
    let Some(tail) = tail else {
        return Some(Target::Repository(name));
    };
    let mut parts = tail.trim_end_matches('/').split('/');
    let reference: Reference = parts.next()?.parse().ok()?;
    let target = match (parts.next(), reference) {
        (None, r) => Target::Reference(name, r),
        (Some("untag"), Reference::Tag(t)) => Target::Untag(name, t),
        (Some("delete"), Reference::Digest(d)) => Target::Delete(name, d),
        _ => return None,
    };
    parts.next().is_none().then_some(target)
}

async fn repository_get(State(ui): State<UiState>, req: Request) -> Response {
    let (viewer, parts) = match ui.begin(req).await {
        Ok(begun) => begun,
        Err(resp) => return resp,
    };
    let rest = parts.uri.path().strip_prefix("/r/").unwrap_or("");
    let page = browse::page_param(parts.uri.query());
    let result = match parse_target(rest) {
        None => Err(UiError::NotFound),
        Some(Target::Repository(name)) => {
            browse::repository(&ui, &viewer, &parts.headers, &name, page).await
        }
        Some(Target::Reference(name, r)) => {
            browse::reference(&ui, &viewer, &parts.headers, &name, &r).await
        }
        Some(Target::Untag(name, tag)) => manage::untag_form(&ui, &viewer, &name, &tag).await,
        Some(Target::Delete(name, d)) => manage::delete_form(&ui, &viewer, &name, &d).await,
    };
    ui.finish(&viewer, result)
}

async fn repository_post(State(ui): State<UiState>, req: Request) -> Response {
    let (viewer, parts) = match ui.begin(req).await {
        Ok(begun) => begun,
        Err(resp) => return resp,
    };
    let rest = parts.uri.path().strip_prefix("/r/").unwrap_or("");
    let result = if !viewer::same_origin(&parts.headers, ui.0.secure) {
        Err(UiError::Denied(
            "This form was not sent from a page of this registry.".to_owned(),
        ))
    } else {
        match parse_target(rest) {
            Some(Target::Untag(name, tag)) => manage::untag(&ui, &viewer, &name, &tag).await,
            Some(Target::Delete(name, d)) => manage::delete(&ui, &viewer, &name, &d).await,
            _ => Err(UiError::NotFound),
        }
    };
    ui.finish(&viewer, result)
}

#[cfg(test)]
mod path_tests {
    use super::*;

    #[test]
    fn repository_paths() {
        let name = |s: &str| s.parse::<RepoName>().unwrap();
        assert_eq!(
            parse_target("team/app"),
            Some(Target::Repository(name("team/app")))
        );
        assert_eq!(
            parse_target("team/app/"),
            Some(Target::Repository(name("team/app")))
        );
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            parse_target("a/b/-/v1.0"),
            Some(Target::Reference(name("a/b"), "v1.0".parse().unwrap()))
        );
        assert_eq!(
            parse_target(&format!("a/-/{}", d.replace(':', "%3A"))),
            Some(Target::Reference(name("a"), d.parse().unwrap()))
        );
        assert_eq!(
            parse_target("a/-/latest/untag"),
            Some(Target::Untag(name("a"), "latest".parse().unwrap()))
        );
        assert_eq!(
            parse_target(&format!("a/-/{d}/delete")),
            Some(Target::Delete(name("a"), d.parse().unwrap()))
        );
        for bad in [
            "",
            "UPPER",
            "a/-/latest/delete",
            &format!("a/-/{d}/untag"),
            "a/-/latest/untag/x",
            "a/-/bad:tag",
            "a/-/",
        ] {
            assert_eq!(parse_target(bad), None, "{bad}");
        }
    }
}
