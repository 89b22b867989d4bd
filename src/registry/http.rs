//! Small pure helpers for the HTTP API: `Content-Range` of upload chunks, pagination
//! parameters, absolute URLs behind proxies, and response header building.

use axum::http::response::Builder;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};

use super::error::ApiError;
use crate::oci::Digest;

pub const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
pub const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
pub const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
pub const OCI_NAMESPACE: HeaderName = HeaderName::from_static("oci-namespace");
pub const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");
pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// Parses an upload chunk's `Content-Range: <start>-<end>` (a `bytes ` prefix is tolerated).
/// Returns the start offset and the chunk length.
pub fn parse_content_range(value: &str) -> Result<(u64, u64), ApiError> {
    let bad = || {
        ApiError::UploadInvalid(format!(
            "invalid Content-Range {value:?}: expected <start>-<end>"
        ))
    };
    let v = value.trim();
    let v = v
        .strip_prefix("bytes=")
        .or_else(|| v.strip_prefix("bytes "))
        .unwrap_or(v);
    let v = v.split('/').next().unwrap_or(v);
    let (a, b) = v.split_once('-').ok_or_else(bad)?;
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end: u64 = b.trim().parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok((start, end - start + 1))
}

/// Parses the `n` pagination parameter.
pub fn parse_n(n: Option<&str>) -> Result<Option<usize>, ApiError> {
    n.map(|v| {
        v.parse::<usize>().map_err(|_| {
            ApiError::PaginationInvalid(format!("n must be a non-negative integer, got {v:?}"))
        })
    })
    .transpose()
}

/// How `Location` URLs are built.
#[derive(Debug, Clone, Default)]
pub struct UrlBase {
    /// `http.host`: an explicit external base URL.
    pub host: Option<String>,
    /// `http.relativeurls`: emit relative `Location`s.
    pub relative: bool,
    /// The server itself terminates TLS.
    pub tls: bool,
}

impl UrlBase {
    /// The external base (`scheme://host`) for this request, honouring `X-Forwarded-Proto`
    /// and `X-Forwarded-Host` from a proxy in front; empty for relative URLs.
    pub fn for_request(&self, headers: &HeaderMap) -> String {
        if self.relative {
            return String::new();
        }
        if let Some(h) = &self.host {
            return h.trim_end_matches('/').to_owned();
        }
        let first = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic()))
        };
        let host = first("x-forwarded-host").or_else(|| first(header::HOST.as_str()));
        let Some(host) = host else {
            return String::new();
        };
        let proto = match first("x-forwarded-proto") {
            Some(p) if p.eq_ignore_ascii_case("https") => "https",
            Some(p) if p.eq_ignore_ascii_case("http") => "http",
            _ if self.tls => "https",
            _ => "http",
        };
        format!("{proto}://{host}")
    }
}

/// Starts a response for content addressed by `digest`: its type, `Docker-Content-Digest`
/// and a strong `ETag`. The flag is true when the client's `If-None-Match` already holds it,
/// in which case the builder is a complete `304 Not Modified`.
pub fn digest_response(
    digest: &Digest,
    content_type: &str,
    request: &HeaderMap,
) -> (Builder, bool) {
    let etag = format!("\"{digest}\"");
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let builder = Response::builder()
        .header(header::CONTENT_TYPE, value(content_type))
        .header(CONTENT_DIGEST, value(digest.to_string()))
        .header(header::ETAG, value(&etag));
    if fresh {
        (builder.status(StatusCode::NOT_MODIFIED), true)
    } else {
        (builder, false)
    }
}

/// A header value from a string known to be visible ASCII (digests, numbers, our URLs).
pub fn value(s: impl AsRef<str>) -> HeaderValue {
    HeaderValue::from_str(s.as_ref()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// HTTP/2 carries the host in `:authority` only; `Location` URLs and origin checks are built
/// from `Host`, so it is filled in from the URI when missing.
pub fn fill_host(parts: &mut axum::http::request::Parts) {
    if !parts.headers.contains_key(axum::http::header::HOST)
        && let Some(host) = parts
            .uri
            .authority()
            .and_then(|a| axum::http::HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(axum::http::header::HOST, host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99").unwrap(), (0, 100));
        assert_eq!(parse_content_range("bytes 100-199/*").unwrap(), (100, 100));
        assert!(parse_content_range("5-1").is_err());
        assert!(parse_content_range("x").is_err());
    }

    #[test]
    fn pagination() {
        assert_eq!(parse_n(None).unwrap(), None);
        assert_eq!(parse_n(Some("5")).unwrap(), Some(5));
        assert!(parse_n(Some("-1")).is_err());
        assert!(parse_n(Some("x")).is_err());
    }

    #[test]
    fn urls_behind_a_proxy() {
        let mut h = HeaderMap::new();
        let base = UrlBase::default();
        assert_eq!(base.for_request(&h), "");
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:5000"));
        assert_eq!(base.for_request(&h), "http://127.0.0.1:5000");
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("registry.example.com, proxy.internal"),
        );
        assert_eq!(base.for_request(&h), "https://registry.example.com");
        let relative = UrlBase {
            relative: true,
            ..UrlBase::default()
        };
        assert_eq!(relative.for_request(&h), "");
        let fixed = UrlBase {
            host: Some("https://r.example/".into()),
            ..UrlBase::default()
        };
        assert_eq!(fixed.for_request(&h), "https://r.example");
    }
}
