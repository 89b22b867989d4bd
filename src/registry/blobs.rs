//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`, with single byte ranges.

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use axum::response::IntoResponse;

use super::http::{self, value};
use super::{ApiResult, AppState, Head};
use crate::oci::{Digest, RepoName};

pub async fn get(state: &AppState, name: &RepoName, digest: &Digest, req: &Head) -> ApiResult {
    let size = state.content.blob_size(name, digest).await?;
    let (builder, fresh) = http::digest_response(digest, "application/octet-stream", req.headers());
    if fresh {
        return Ok(builder.body(Body::empty()).unwrap_or_default());
    }
    let mut builder = builder
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, "max-age=31536000");
    let range = match req.headers().get(header::RANGE).map(|v| v.to_str()) {
        Some(Ok(v)) => Some(http::parse_range(v, size)?),
        Some(Err(_)) => {
            return Err(super::ApiError::RangeNotSatisfiable(
                "non-ASCII Range".into(),
                Some(size),
            ));
        }
        None => None,
    };
    let length = range.map_or(size, |r| r.end - r.start + 1);
    builder = builder.header(header::CONTENT_LENGTH, length);
    if let Some(r) = range {
        builder = builder.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            value(format!("bytes {}-{}/{size}", r.start, r.end)),
        );
    }
    let body = if req.method() == Method::HEAD {
        Body::empty()
    } else {
        Body::from_stream(state.content.open_blob(digest, range).await?)
    };
    Ok(builder.body(body).unwrap_or_default())
}

pub async fn delete(state: &AppState, name: &RepoName, digest: &Digest) -> ApiResult {
    state.content.delete_blob(name, digest).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}
