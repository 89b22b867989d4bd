//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`, with single byte ranges.

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use axum::response::IntoResponse;

use super::http::{self, value};
use super::{ApiResult, AppState, Head};
use crate::content::BlobWant;
use crate::oci::{Digest, RepoName};

pub async fn get(state: &AppState, name: &RepoName, digest: &Digest, req: &Head) -> ApiResult {
    // A client that already holds the digest needs nothing read.
    let (builder, fresh) = http::digest_response(digest, "application/octet-stream", req.headers());
    let want = if req.method() == Method::HEAD || fresh {
        BlobWant::Head
    } else {
        let range = req
            .headers()
            .get(header::RANGE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        BlobWant::Body { range }
    };
    let blob = state.store.read_blob(name, digest, want).await?;
    if fresh {
        return Ok(builder.body(Body::empty()).unwrap_or_default());
    }
    if let Some(url) = blob.redirect {
        // As distribution does: the client fetches the bytes (and its Range) from storage.
        return Ok((
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, value(url))],
        )
            .into_response());
    }
    let (size, range) = (blob.size, blob.range);
    let mut builder = builder
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, "max-age=31536000");
    let length = range.map_or(size, |r| r.end - r.start + 1);
    builder = builder.header(header::CONTENT_LENGTH, length);
    if let Some(r) = range {
        builder = builder.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            value(format!("bytes {}-{}/{size}", r.start, r.end)),
        );
    }
    let body = match blob.stream {
        Some(stream) => Body::from_stream(stream),
        None => Body::empty(),
    };
    Ok(builder.body(body).unwrap_or_default())
}

pub async fn delete(state: &AppState, name: &RepoName, digest: &Digest) -> ApiResult {
    state.store.delete_blob(name, digest).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}
