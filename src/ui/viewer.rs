//! Who is looking at a page, and whether a form post came from this site. A viewer is
//! identified as the API identifies callers ([`crate::auth::Authenticator`]): Basic
//! credentials, or the UI's session cookie for a user the htpasswd file still has with the
//! same password, not signed out here; nobody else is anonymous. What a viewer may see and
//! do is the API's policy, unchanged.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, header};

use super::session::{FLASH_COOKIE, Revoked, SESSION_COOKIE, Session, SessionKey, cookie};
use crate::auth::{Action, AuthError, Authenticator, Identity};

/// The person behind a request.
pub(crate) struct Viewer {
    pub(crate) identity: Identity,
    auth: Option<Arc<Authenticator>>,
    /// A flash message waiting for this page (its cookie is cleared by the response).
    pub(crate) flash: Option<String>,
    /// The session cookie named a user that is gone or was forged: clear it.
    pub(crate) stale_session: bool,
    /// The session cookie that identified the viewer (not Basic credentials): signing out
    /// ends it.
    pub(crate) session: Option<Session>,
    /// The browser speaks HTTPS to us (or to the proxy in front): cookies get `Secure`.
    pub(crate) secure: bool,
}

impl Viewer {
    /// Identifies the viewer. Wrong Basic credentials are an error, as in the API.
    pub(crate) async fn identify(
        auth: Option<&Arc<Authenticator>>,
        (key, revoked): (&SessionKey, &Revoked),
        headers: &HeaderMap,
        client: Option<IpAddr>,
    ) -> Result<Viewer, AuthError> {
        let cookies = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join("; ");
        let now = SystemTime::now();
        let flash = cookie(&cookies, FLASH_COOKIE).and_then(|v| key.flash_message(v, now));
        let mut viewer = Viewer {
            identity: Identity::Anonymous,
            auth: auth.cloned(),
            flash,
            stale_session: false,
            session: None,
            secure: false,
        };
        let Some(auth) = auth else {
            return Ok(viewer);
        };
        if let Some(basic) = headers.get(header::AUTHORIZATION) {
            viewer.identity = auth.authenticate(Some(basic.as_bytes()), client).await?;
            return Ok(viewer);
        }
        if let Some(value) = cookie(&cookies, SESSION_COOKIE).filter(|v| !v.is_empty()) {
            match key.open_session(value, now) {
                Some(session) if !revoked.contains(&session) && current(auth, key, &session) => {
                    viewer.identity = Identity::User(session.user.clone());
                    viewer.session = Some(session);
                }
                _ => viewer.stale_session = true,
            }
        }
        Ok(viewer)
    }

    /// Nobody in particular (for the page refusing wrong credentials).
    pub(crate) fn anonymous(auth: Option<Arc<Authenticator>>) -> Viewer {
        Viewer {
            identity: Identity::Anonymous,
            auth,
            flash: None,
            stale_session: false,
            session: None,
            secure: false,
        }
    }

    /// Whether the viewer may do `action` on `repository` (everyone may without auth).
    pub(crate) fn may(&self, action: Action, repository: &str) -> bool {
        self.auth
            .as_ref()
            .is_none_or(|a| a.authorize(&self.identity, action, repository).is_ok())
    }

    /// Whether the viewer may pull every repository, present and future (everyone may
    /// without auth; see [`crate::auth::Policy::allows_everywhere`]).
    pub(crate) fn may_pull_everything(&self) -> bool {
        self.auth
            .as_ref()
            .is_none_or(|a| a.policy().allows_everywhere(&self.identity, Action::Pull))
    }

    /// The signed-in user's name.
    pub(crate) fn user(&self) -> Option<&str> {
        match &self.identity {
            Identity::User(u) => Some(u),
            Identity::Anonymous => None,
        }
    }

    /// Signed in with a session cookie, which signing out can end (Basic credentials
    /// cannot be signed out of).
    pub(crate) fn may_sign_out(&self) -> bool {
        self.session.is_some()
    }

    /// Auth is configured and nobody is signed in.
    pub(crate) fn may_sign_in(&self) -> bool {
        self.auth.is_some() && self.identity == Identity::Anonymous
    }

    /// Anonymous, and anonymous callers may see nothing at all.
    pub(crate) fn must_sign_in(&self) -> bool {
        self.may_sign_in()
            && self
                .auth
                .as_ref()
                .is_some_and(|a| !a.policy().anonymous_allowed())
    }
}

/// Whether a session's user still has the password it was signed in with.
fn current(auth: &Authenticator, key: &SessionKey, session: &Session) -> bool {
    auth.password_hash(&session.user)
        .is_some_and(|hash| key.fingerprint(&hash) == session.fingerprint)
}

/// The client's address, when the server recorded it.
pub(crate) fn client_of(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The host the browser asked for: `X-Forwarded-Host` from a proxy in front, else `Host`.
pub(crate) fn request_host(headers: &HeaderMap) -> Option<String> {
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_owned)
    };
    first("x-forwarded-host").or_else(|| first(header::HOST.as_str()))
}

/// Whether a proxy in front says the browser used HTTPS (`X-Forwarded-Proto: https`).
pub(crate) fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// The scheme the browser used, when known: a proxy's `X-Forwarded-Proto`, else `https`
/// when the server terminates TLS. A plain server without that header may sit behind a
/// proxy that terminates TLS and says nothing: unknown.
fn browser_scheme(headers: &HeaderMap, tls: bool) -> Option<String> {
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| p == "http" || p == "https");
    forwarded.or_else(|| tls.then(|| "https".to_owned()))
}

/// Whether a form post comes from a page of this site: its `Origin` (or, without one, its
/// `Referer`) names the host the request was sent to, and the scheme the browser used when
/// that is known (`tls`: the server terminates TLS). Cross-site posts, and posts that say
/// nothing of where they come from, are refused.
pub(crate) fn same_origin(headers: &HeaderMap, tls: bool) -> bool {
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some((scheme, authority)) = source.and_then(origin_of) else {
        return false;
    };
    if browser_scheme(headers, tls).is_some_and(|s| s != scheme) {
        return false;
    }
    let hosts = [headers.get(header::HOST), headers.get("x-forwarded-host")];
    hosts
        .into_iter()
        .flatten()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(',').next())
        .any(|h| h.trim().eq_ignore_ascii_case(authority))
}

/// The scheme (`http` or `https`, lowercase) and `host[:port]` of an `http(s)://` URL.
fn origin_of(url: &str) -> Option<(&'static str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = ["https", "http"]
        .into_iter()
        .find(|s| s.eq_ignore_ascii_case(scheme))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some((scheme, &rest[..end])).filter(|(_, a)| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn same_origin_plain(h: &HeaderMap) -> bool {
        same_origin(h, false)
    }

    #[test]
    fn posts_must_come_from_this_site() {
        let host = ("host", "registry.test:5000");
        assert!(same_origin_plain(&headers(&[
            host,
            ("origin", "http://registry.test:5000")
        ])));
        assert!(same_origin_plain(&headers(&[
            host,
            ("origin", "https://REGISTRY.test:5000")
        ])));
        assert!(same_origin_plain(&headers(&[
            host,
            ("referer", "http://registry.test:5000/r/app?x=1")
        ])));
        assert!(!same_origin_plain(&headers(&[
            host,
            ("origin", "http://evil.test")
        ])));
        assert!(!same_origin_plain(&headers(&[host, ("origin", "null")])));
        assert!(!same_origin_plain(&headers(&[
            host,
            ("origin", "http://registry.test")
        ])));
        assert!(!same_origin_plain(&headers(&[
            host,
            ("referer", "http://registry.test:5000.evil/")
        ])));
        assert!(
            !same_origin_plain(&headers(&[host])),
            "no Origin, no Referer"
        );
        // An Origin present wins over a Referer.
        assert!(!same_origin_plain(&headers(&[
            host,
            ("origin", "http://evil.test"),
            ("referer", "http://registry.test:5000/")
        ])));
        // Behind a proxy that rewrites Host.
        assert!(same_origin_plain(&headers(&[
            ("host", "10.0.0.5:5000"),
            ("x-forwarded-host", "registry.example.com"),
            ("origin", "https://registry.example.com")
        ])));
    }

    #[test]
    fn the_host_the_browser_used() {
        assert_eq!(
            request_host(&headers(&[("host", "localhost:5000")])).as_deref(),
            Some("localhost:5000")
        );
        assert_eq!(
            request_host(&headers(&[
                ("host", "10.0.0.5"),
                ("x-forwarded-host", "r.example.com, inner")
            ]))
            .as_deref(),
            Some("r.example.com")
        );
        assert_eq!(request_host(&headers(&[])), None);
    }
}
