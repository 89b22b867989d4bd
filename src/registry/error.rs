//! The one error type of the HTTP API and the one place where errors become OCI error
//! codes and HTTP statuses. Bodies are `{"errors":[{"code","message","detail"}]}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::content::ContentError;
use crate::oci::{NameError, RouteError};
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("{0}")]
    DigestInvalid(String),
    #[error("{0}")]
    UploadInvalid(String),
    #[error("{0}")]
    SizeInvalid(String),
    #[error("{0}")]
    PaginationInvalid(String),
    #[error("method {0} is not allowed on this endpoint")]
    MethodNotAllowed(String),
    #[error("authentication required")]
    Unauthorized { realm: String },
    #[error("requested access to the resource is denied")]
    Denied,
    #[error("too many failed login attempts; retry in {} s", retry_after.as_secs().max(1))]
    TooManyRequests { retry_after: std::time::Duration },
    #[error("the repository index is still loading from storage; retry in a few seconds")]
    IndexLoading,
}

/// An OCI / Docker registry error code with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub name: &'static str,
    pub status: StatusCode,
}

const fn code(name: &'static str, status: StatusCode) -> Code {
    Code { name, status }
}

pub const BLOB_UNKNOWN: Code = code("BLOB_UNKNOWN", StatusCode::NOT_FOUND);
pub const BLOB_UPLOAD_INVALID: Code = code("BLOB_UPLOAD_INVALID", StatusCode::BAD_REQUEST);
pub const BLOB_UPLOAD_UNKNOWN: Code = code("BLOB_UPLOAD_UNKNOWN", StatusCode::NOT_FOUND);
pub const DIGEST_INVALID: Code = code("DIGEST_INVALID", StatusCode::BAD_REQUEST);
pub const MANIFEST_BLOB_UNKNOWN: Code = code("MANIFEST_BLOB_UNKNOWN", StatusCode::BAD_REQUEST);
pub const MANIFEST_INVALID: Code = code("MANIFEST_INVALID", StatusCode::BAD_REQUEST);
pub const MANIFEST_UNKNOWN: Code = code("MANIFEST_UNKNOWN", StatusCode::NOT_FOUND);
pub const NAME_INVALID: Code = code("NAME_INVALID", StatusCode::BAD_REQUEST);
pub const NAME_UNKNOWN: Code = code("NAME_UNKNOWN", StatusCode::NOT_FOUND);
pub const SIZE_INVALID: Code = code("SIZE_INVALID", StatusCode::BAD_REQUEST);
pub const TAG_INVALID: Code = code("TAG_INVALID", StatusCode::BAD_REQUEST);
pub const UNSUPPORTED: Code = code("UNSUPPORTED", StatusCode::METHOD_NOT_ALLOWED);
pub const PAGINATION_NUMBER_INVALID: Code =
    code("PAGINATION_NUMBER_INVALID", StatusCode::BAD_REQUEST);
pub const UNAUTHORIZED: Code = code("UNAUTHORIZED", StatusCode::UNAUTHORIZED);
pub const DENIED: Code = code("DENIED", StatusCode::FORBIDDEN);
pub const TOOMANYREQUESTS: Code = code("TOOMANYREQUESTS", StatusCode::TOO_MANY_REQUESTS);
/// distribution answers an unsatisfiable blob range this way.
pub const RANGE_NOT_SATISFIABLE: Code = code("BLOB_UNKNOWN", StatusCode::RANGE_NOT_SATISFIABLE);
pub const NOT_FOUND: Code = code("NOT_FOUND", StatusCode::NOT_FOUND);
pub const UNKNOWN: Code = code("UNKNOWN", StatusCode::INTERNAL_SERVER_ERROR);
/// The spec has no code for a failed upstream: the status and message say what happened.
pub const UPSTREAM_FAILED: Code = code("UNKNOWN", StatusCode::BAD_GATEWAY);
/// The spec has no code for it; the status, `Retry-After` and message say what happened.
pub const UNAVAILABLE: Code = code("UNKNOWN", StatusCode::SERVICE_UNAVAILABLE);
/// The spec has no code for it; the status and message say what happened.
pub const STORAGE_FULL: Code = code("UNKNOWN", StatusCode::INSUFFICIENT_STORAGE);

impl ApiError {
    /// The OCI code and HTTP status for this error.
    pub fn code(&self) -> Code {
        use ContentError as C;
        match self {
            ApiError::Content(e) => match e {
                C::BlobUnknown(_) => BLOB_UNKNOWN,
                C::ManifestUnknown(_) => MANIFEST_UNKNOWN,
                C::NameUnknown(_) => NAME_UNKNOWN,
                C::UploadUnknown(_) => BLOB_UPLOAD_UNKNOWN,
                C::DigestMismatch { .. } => DIGEST_INVALID,
                C::ManifestInvalid(_) => MANIFEST_INVALID,
                C::ManifestTooLarge { .. } => {
                    code("MANIFEST_INVALID", StatusCode::PAYLOAD_TOO_LARGE)
                }
                C::ManifestBlobUnknown(_) => MANIFEST_BLOB_UNKNOWN,
                C::ChunkOutOfOrder { .. } | C::ChunkLength { .. } => {
                    code("BLOB_UPLOAD_INVALID", StatusCode::RANGE_NOT_SATISFIABLE)
                }
                C::Body(_) => BLOB_UPLOAD_INVALID,
                C::RangeNotSatisfiable { .. } => RANGE_NOT_SATISFIABLE,
                C::DeleteDisabled | C::ReadOnly | C::Mirror => UNSUPPORTED,
                C::UnknownUpstream(_) => NAME_UNKNOWN,
                C::Upstream(e) => upstream_code(e),
                C::Storage(StorageError::Full { .. }) => STORAGE_FULL,
                C::Storage(_) => UNKNOWN,
            },
            ApiError::Route(e) => match e {
                RouteError::NotFound => NOT_FOUND,
                RouteError::Name(_) => NAME_INVALID,
                RouteError::Reference(NameError::Digest(_)) => DIGEST_INVALID,
                RouteError::Reference(_) => TAG_INVALID,
                RouteError::UploadId => BLOB_UPLOAD_UNKNOWN,
            },
            ApiError::DigestInvalid(_) => DIGEST_INVALID,
            ApiError::UploadInvalid(_) => BLOB_UPLOAD_INVALID,
            ApiError::SizeInvalid(_) => SIZE_INVALID,
            ApiError::PaginationInvalid(_) => PAGINATION_NUMBER_INVALID,
            ApiError::MethodNotAllowed(_) => UNSUPPORTED,
            ApiError::Unauthorized { .. } => UNAUTHORIZED,
            ApiError::Denied => DENIED,
            ApiError::TooManyRequests { .. } => TOOMANYREQUESTS,
            ApiError::IndexLoading => UNAVAILABLE,
        }
    }

    /// The message clients see. Internal details stay in the server log.
    fn message(&self) -> String {
        match self {
            ApiError::Content(ContentError::Storage(StorageError::Full { .. })) => {
                "the registry's storage is full: nothing was stored; free space or grow the volume, then retry".to_owned()
            }
            ApiError::Content(ContentError::Storage(_)) => "internal storage error".to_owned(),
            other => other.to_string(),
        }
    }
}

/// How an upstream's failure reaches the client of a mirror: its 429 as 429 (with its
/// `Retry-After`), content it does not have as unknown, anything else as 502.
fn upstream_code(e: &crate::proxy::UpstreamError) -> Code {
    use crate::proxy::UpstreamError as U;
    match e {
        U::Status { status: 429, .. } => TOOMANYREQUESTS,
        U::Status { status: 404, .. } => NOT_FOUND,
        U::Status {
            status: 401 | 403, ..
        }
        | U::Unauthorized { .. } => DENIED,
        U::Status { .. } | U::Unreachable { .. } => UPSTREAM_FAILED,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Code { name, status } = self.code();
        let body = serde_json::json!({ "errors": [{ "code": name, "message": self.message(), "detail": {} }] });
        let mut resp = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        if let ApiError::Content(ContentError::RangeNotSatisfiable { size, .. }) = &self
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        if let ApiError::Content(
            ContentError::ChunkOutOfOrder {
                expected: offset, ..
            }
            | ContentError::ChunkLength { offset, .. },
        ) = &self
            && let Ok(v) = HeaderValue::from_str(&format!("0-{}", offset.saturating_sub(1)))
        {
            resp.headers_mut().insert(header::RANGE, v);
        }
        if let ApiError::Unauthorized { realm } = &self
            && let Ok(v) =
                HeaderValue::from_str(&format!("Basic realm=\"{}\"", realm.replace('"', "")))
        {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        let retry = match &self {
            ApiError::TooManyRequests { retry_after } => Some(*retry_after),
            ApiError::IndexLoading => Some(std::time::Duration::from_secs(5)),
            ApiError::Content(ContentError::Upstream(crate::proxy::UpstreamError::Status {
                retry_after,
                ..
            })) => *retry_after,
            _ => None,
        };
        if let Some(retry_after) = retry
            && let Ok(v) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        // Internal errors are logged once, here, with their cause.
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_errors_do_not_leak_paths() {
        let e = ApiError::Content(ContentError::Storage(crate::storage::StorageError::io(
            "/secret/path",
            std::io::Error::other("disk on fire"),
        )));
        assert_eq!(e.code(), UNKNOWN);
        assert!(!e.message().contains("/secret"));
        let full = ApiError::Content(ContentError::Storage(StorageError::io(
            "/secret/path",
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        )));
        assert_eq!(full.code().status, StatusCode::INSUFFICIENT_STORAGE);
        assert!(
            full.message().contains("storage is full"),
            "{}",
            full.message()
        );
        assert!(!full.message().contains("/secret"));
        assert!(
            full.to_string().contains("/secret/path"),
            "the log names the path"
        );
    }

    #[test]
    fn route_errors_map_to_spec_codes() {
        assert_eq!(ApiError::Route(RouteError::NotFound).code(), NOT_FOUND);
        let name_err = "Bad".parse::<crate::oci::RepoName>().unwrap_err();
        assert_eq!(
            ApiError::Route(RouteError::Name(name_err)).code(),
            NAME_INVALID
        );
        let dig = "sha256:12".parse::<crate::oci::Reference>().unwrap_err();
        assert_eq!(
            ApiError::Route(RouteError::Reference(dig)).code(),
            DIGEST_INVALID
        );
    }
}
