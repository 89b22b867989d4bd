//! Signing in and out with the htpasswd users. A sign-in is checked by the API's
//! [`crate::auth::Authenticator`] (its caches and failed-login limits) and kept in a signed
//! session cookie (see [`super::session`]) tied to the user's password hash; signing out
//! revokes the cookie on this process. Form posts must come from this site.

use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::browse::{param, query_params};
use super::pages::{LoginPage, render};
use super::session::{SESSION_COOKIE, SESSION_LIFETIME, flash_cookie, set_cookie};
use super::viewer::{Viewer, client_of, same_origin};
use super::{UiError, UiState, html, see_other};
use crate::auth::AuthError;

/// The largest sign-in form read.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// Where to go after signing in: a path on this site, else `/`.
fn safe_next(next: Option<String>) -> String {
    next.filter(|n| {
        n.starts_with('/')
            && !n.starts_with("//")
            && !n.contains('\\')
            && n.bytes().all(|b| b.is_ascii_graphic())
    })
    .unwrap_or_else(|| "/".to_owned())
}

fn login_page(
    ui: &UiState,
    viewer: &Viewer,
    status: StatusCode,
    error: Option<String>,
    next: String,
    username: String,
) -> Response {
    let chrome = ui.chrome(viewer, "Sign in");
    let page = LoginPage {
        chrome: &chrome,
        error,
        next,
        username,
    };
    html(status, render(&page))
}

/// `GET /-/login`.
pub(super) async fn form(State(ui): State<UiState>, req: Request) -> Response {
    let (viewer, parts) = match ui.begin(req).await {
        Ok(begun) => begun,
        Err(resp) => return resp,
    };
    let next = safe_next(param(&query_params(parts.uri.query()), "next"));
    let result = if ui.0.auth.is_none() || viewer.user().is_some() {
        Ok(see_other(&next))
    } else {
        Ok(login_page(
            &ui,
            &viewer,
            StatusCode::OK,
            None,
            next,
            String::new(),
        ))
    };
    ui.finish(&viewer, result)
}

/// `POST /-/login` with `username` and `password`.
pub(super) async fn submit(State(ui): State<UiState>, req: Request) -> Response {
    let client = client_of(req.extensions());
    let (viewer, parts, body) = match ui.begin_with_body(req).await {
        Ok(begun) => begun,
        Err(resp) => return resp,
    };
    let result = async {
        if !same_origin(&parts.headers, ui.0.secure) {
            return Err(UiError::Denied(
                "This form was not sent from a page of this registry.".to_owned(),
            ));
        }
        let Some(auth) = &ui.0.auth else {
            return Ok(see_other("/"));
        };
        let body = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| UiError::BadRequest("The form is too large.".to_owned()))?;
        let fields = query_params(std::str::from_utf8(&body).ok());
        let username = param(&fields, "username").unwrap_or_default();
        let password = param(&fields, "password").unwrap_or_default();
        let next = safe_next(param(&fields, "next"));
        let verified = auth.verify_login(&username, &password, client).await;
        // The hash as of now: reloaded since the check, the session is stale at once.
        let hash = auth.password_hash(&username);
        match verified.and_then(|_| hash.ok_or(AuthError::Unauthorized)) {
            Ok(hash) => {
                let value = ui.0.key.session(&username, &hash, SystemTime::now());
                let mut resp = see_other(&next);
                let cookie = set_cookie(
                    SESSION_COOKIE,
                    &value,
                    Some(SESSION_LIFETIME),
                    viewer.secure,
                );
                ui.set_cookie(&mut resp, &cookie);
                let welcome = format!("Signed in as {username}.");
                ui.set_cookie(&mut resp, &flash_cookie(&ui.0.key, &welcome, viewer.secure));
                tracing::info!(user = %username, "signed in to the web UI");
                Ok(resp)
            }
            Err(AuthError::TooManyAttempts { retry_after }) => {
                let secs = retry_after.as_secs().max(1);
                let error =
                    format!("Too many failed sign-ins from your address; try again in {secs} s.");
                let mut resp = login_page(
                    &ui,
                    &viewer,
                    StatusCode::TOO_MANY_REQUESTS,
                    Some(error),
                    next,
                    username,
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                Ok(resp)
            }
            Err(_) => Ok(login_page(
                &ui,
                &viewer,
                StatusCode::UNAUTHORIZED,
                Some("Wrong user name or password.".to_owned()),
                next,
                username,
            )),
        }
    }
    .await;
    ui.finish(&viewer, result)
}

/// `POST /-/logout`.
pub(super) async fn logout(State(ui): State<UiState>, req: Request) -> Response {
    let (viewer, parts) = match ui.begin(req).await {
        Ok(begun) => begun,
        Err(resp) => return resp,
    };
    let result = if same_origin(&parts.headers, ui.0.secure) {
        if let Some(session) = &viewer.session {
            ui.0.revoked.revoke(session, SystemTime::now());
        }
        let mut resp = see_other("/");
        ui.set_cookie(
            &mut resp,
            &set_cookie(SESSION_COOKIE, "", None, viewer.secure),
        );
        ui.set_cookie(
            &mut resp,
            &flash_cookie(&ui.0.key, "Signed out.", viewer.secure),
        );
        Ok(resp)
    } else {
        Err(UiError::Denied(
            "This form was not sent from a page of this registry.".to_owned(),
        ))
    };
    ui.finish(&viewer, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_returns_only_to_this_site() {
        assert_eq!(safe_next(Some("/r/app?page=2".into())), "/r/app?page=2");
        for bad in [
            "//evil.test/",
            "https://evil.test/",
            "/\\evil",
            "r/app",
            "/a b",
        ] {
            assert_eq!(safe_next(Some(bad.into())), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
