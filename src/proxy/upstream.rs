//! One upstream registry over HTTP: its endpoints tried in order, an endpoint that fails to
//! answer skipped for a while (a circuit breaker, so a dead upstream does not make every
//! pull wait), short connect timeouts, redirects followed (blobs live on CDNs), and the
//! upstream's own credentials: Basic, or Docker tokens fetched from the challenge's realm and
//! cached per scope until they expire. A client's own credentials never reach it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use base64::Engine;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;

use super::challenge::{self, Challenge};
use super::client::{HttpClient, http_client};
use super::settings::UpstreamSpec;

/// How long an upstream may take to start answering.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an endpoint that failed is skipped.
const ENDPOINT_COOLDOWN: Duration = Duration::from_secs(30);
const MAX_REDIRECTS: usize = 5;

/// Why an upstream could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {host} is unreachable: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("upstream {host} answered {status}")]
    Status {
        host: String,
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("upstream {host} refused the mirror's credentials")]
    Unauthorized { host: String },
}

impl UpstreamError {
    /// The same failure, reported again `remaining` before the upstream is retried.
    fn after(self, remaining: Duration) -> UpstreamError {
        let remaining = remaining.max(Duration::from_secs(1));
        match self {
            UpstreamError::Status { host, status, .. } => UpstreamError::Status {
                host,
                status,
                retry_after: Some(remaining),
            },
            UpstreamError::Unreachable { host, reason } => UpstreamError::Unreachable {
                host,
                reason: format!("{reason} (retried in {} s)", remaining.as_secs()),
            },
            other => other,
        }
    }

    /// Whether the upstream said the content does not exist (as opposed to failing).
    pub fn is_not_found(&self) -> bool {
        matches!(self, UpstreamError::Status { status: 404, .. })
    }
}

struct Endpoint {
    base: String,
    /// Until when the endpoint is skipped, and the failure that put it there.
    down: Mutex<Option<(Instant, UpstreamError)>>,
}

impl Endpoint {
    fn down_until(&self) -> Option<(Instant, UpstreamError)> {
        self.down.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_down(&self, state: Option<(Instant, UpstreamError)>) {
        *self.down.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }
}

/// An upstream registry.
pub struct Upstream {
    pub host: String,
    endpoints: Vec<Endpoint>,
    credentials: Option<(String, String)>,
    client: HttpClient,
    /// Bearer tokens by scope, with when they stop being used.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    pub metrics: std::sync::Arc<super::metrics::ProxyMetrics>,
}

impl Upstream {
    pub fn new(
        spec: &UpstreamSpec,
        metrics: std::sync::Arc<super::metrics::ProxyMetrics>,
    ) -> Result<Upstream, String> {
        let client = http_client(spec)?;
        Ok(Upstream {
            host: spec.host.clone(),
            endpoints: spec
                .endpoints
                .iter()
                .map(|base| Endpoint {
                    base: base.clone(),
                    down: Mutex::new(None),
                })
                .collect(),
            credentials: spec.credentials.clone(),
            client,
            tokens: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// Sends `method path` (path starts with `/v2/`) to the first endpoint that answers, with
    /// the upstream's credentials for `repository`. A non-2xx answer is an error.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        repository: &str,
        accept: &[&str],
    ) -> Result<hyper::Response<Incoming>, UpstreamError> {
        let now = Instant::now();
        // When every endpoint failed recently, fail fast with what the soonest to return
        // said: a dead or rate-limiting upstream must not make every pull wait on it.
        let healthy: Vec<&Endpoint> = self
            .endpoints
            .iter()
            .filter(|e| e.down_until().is_none_or(|(until, _)| until <= now))
            .collect();
        if healthy.is_empty() {
            let soonest = self
                .endpoints
                .iter()
                .filter_map(Endpoint::down_until)
                .min_by_key(|(until, _)| *until);
            if let Some((until, error)) = soonest {
                return Err(error.after(until.saturating_duration_since(now)));
            }
        }
        let mut last = None;
        for endpoint in healthy {
            match self
                .send_to(&endpoint.base, &method, path, repository, accept)
                .await
            {
                Ok(resp) => {
                    endpoint.set_down(None);
                    return Ok(resp);
                }
                Err(e) => {
                    self.metrics.error(&self.host, &e);
                    let cooldown = match &e {
                        UpstreamError::Unreachable { .. } => ENDPOINT_COOLDOWN,
                        UpstreamError::Status {
                            status: 429,
                            retry_after,
                            ..
                        } => retry_after.unwrap_or(ENDPOINT_COOLDOWN),
                        UpstreamError::Status { status, .. } if *status >= 500 => ENDPOINT_COOLDOWN,
                        _ => return Err(e),
                    };
                    tracing::warn!(upstream = %self.host, endpoint = %endpoint.base, error = %e, cooldown_secs = cooldown.as_secs(), "upstream endpoint failed; skipping it for a while");
                    endpoint.set_down(Some((Instant::now() + cooldown, e.clone())));
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| UpstreamError::Unreachable {
            host: self.host.clone(),
            reason: "every endpoint failed recently; retrying later".into(),
        }))
    }

    async fn send_to(
        &self,
        base: &str,
        method: &Method,
        path: &str,
        repository: &str,
        accept: &[&str],
    ) -> Result<hyper::Response<Incoming>, UpstreamError> {
        let scope = challenge::pull_scope(repository);
        let url = format!("{base}{path}");
        let mut auth = self.cached_token(&scope).map(|t| format!("Bearer {t}"));
        if auth.is_none() {
            auth = self.basic();
        }
        let resp = self.request(method, &url, auth.as_deref(), accept).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return self.check(resp);
        }
        let offered = resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(challenge::parse);
        let auth = match offered {
            Some(Challenge::Bearer {
                realm,
                service,
                scope: asked,
            }) => {
                let scope = asked.unwrap_or(scope);
                let token = self.fetch_token(&realm, service.as_deref(), &scope).await?;
                format!("Bearer {token}")
            }
            Some(Challenge::Basic) if auth.is_none() => {
                self.basic().ok_or_else(|| self.unauthorized())?
            }
            _ => return Err(self.unauthorized()),
        };
        let resp = self.request(method, &url, Some(&auth), accept).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized());
        }
        self.check(resp)
    }

    /// One request, following redirects (without credentials to another host).
    async fn request(
        &self,
        method: &Method,
        url: &str,
        auth: Option<&str>,
        accept: &[&str],
    ) -> Result<hyper::Response<Incoming>, UpstreamError> {
        let mut url = url.to_owned();
        let origin = authority(&url).to_owned();
        for _ in 0..=MAX_REDIRECTS {
            let uri: Uri = url.parse().map_err(|e| self.unreachable(format!("{e}")))?;
            let mut req = Request::builder().method(method.clone()).uri(uri);
            if let Some(auth) = auth.filter(|_| authority(&url) == origin) {
                req = req.header(header::AUTHORIZATION, auth);
            }
            for a in accept {
                req = req.header(header::ACCEPT, *a);
            }
            let req = req
                .body(Empty::new())
                .map_err(|e| self.unreachable(e.to_string()))?;
            let resp = tokio::time::timeout(RESPONSE_TIMEOUT, self.client.request(req))
                .await
                .map_err(|_| self.unreachable("no answer in time".into()))?
                .map_err(|e| self.unreachable(error_chain(&e)))?;
            if resp.status().is_redirection()
                && let Some(next) = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
            {
                url = resolve(&url, next);
                continue;
            }
            return Ok(resp);
        }
        Err(self.unreachable("too many redirects".into()))
    }

    fn check(
        &self,
        resp: hyper::Response<Incoming>,
    ) -> Result<hyper::Response<Incoming>, UpstreamError> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(UpstreamError::Status {
            host: self.host.clone(),
            status: resp.status().as_u16(),
            retry_after: retry_after(resp.headers()),
        })
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, UpstreamError> {
        let mut url = format!("{realm}?scope={}", encode(scope));
        if let Some(service) = service {
            url.push_str(&format!("&service={}", encode(service)));
        }
        let basic = self.basic();
        let resp = self
            .request(&Method::GET, &url, basic.as_deref(), &[])
            .await?;
        if !resp.status().is_success() {
            return Err(self.unauthorized());
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| self.unreachable(e.to_string()))?
            .to_bytes();
        let (token, lifetime) = challenge::token(&body).ok_or_else(|| self.unauthorized())?;
        // Renew a little early, so a token does not expire on its way.
        let until = Instant::now() + lifetime.saturating_sub(lifetime / 10);
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(scope.to_owned(), (token.clone(), until));
        Ok(token)
    }

    fn cached_token(&self, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(scope)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(t, _)| t.clone())
    }

    fn basic(&self) -> Option<String> {
        self.credentials.as_ref().map(|(u, p)| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            format!("Basic {encoded}")
        })
    }

    fn unreachable(&self, reason: String) -> UpstreamError {
        UpstreamError::Unreachable {
            host: self.host.clone(),
            reason,
        }
    }

    fn unauthorized(&self) -> UpstreamError {
        UpstreamError::Unauthorized {
            host: self.host.clone(),
        }
    }
}

/// `Retry-After` in seconds.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// A `Location` against the URL it answered: absolute, or a path on the same origin.
fn resolve(current: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let scheme_end = current.find("://").map_or(0, |i| i + 3);
    let origin_end = current[scheme_end..]
        .find('/')
        .map_or(current.len(), |i| scheme_end + i);
    format!("{}{location}", &current[..origin_end])
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An error with its causes, for a log line that says what happened.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_and_encoding() {
        assert_eq!(
            resolve("https://a.example/v2/x/blobs/sha256:1", "/other/path"),
            "https://a.example/other/path"
        );
        assert_eq!(
            resolve("https://a.example/v2/x", "https://cdn.example/b?sig=1"),
            "https://cdn.example/b?sig=1"
        );
        assert_eq!(authority("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
        assert_eq!(encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(30)));
    }
}
