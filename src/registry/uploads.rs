//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (session, monolithic with `digest`, or
//! cross-repository mount), `PATCH` chunks, `PUT` to complete, `GET` status, `DELETE`.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::access::Caller;
use super::error::ApiError;
use super::http::{self, CONTENT_DIGEST, UPLOAD_UUID, value};
use super::{ApiResult, AppState, Head, body_stream, param, query};
use crate::auth::Action;
use crate::content::ChunkRange;
use crate::oci::{Digest, RepoName};

pub async fn start(
    state: &AppState,
    name: &RepoName,
    req: &Head,
    body: axum::body::Body,
    caller: &Caller,
) -> ApiResult {
    let params = query(req);
    if let Some(mount) = param(&params, "mount") {
        let digest: Digest = mount
            .parse()
            .map_err(|e| ApiError::DigestInvalid(format!("mount: {e}")))?;
        // Mounting from a repository the caller may not pull falls back to an upload.
        if let Some(from) = param(&params, "from") {
            let from: RepoName = from
                .parse()
                .map_err(|e| ApiError::Route(crate::oci::RouteError::Name(e)))?;
            if caller.may(Action::Pull, from.as_str())
                && state.store.mount_blob(name, &digest, &from).await?
            {
                return Ok(created(state, req.headers(), name, &digest));
            }
        }
    }
    if let Some(digest) = param(&params, "digest").map(parse_digest).transpose()? {
        state
            .store
            .put_blob(name, &digest, body_stream(body))
            .await?;
        return Ok(created(state, req.headers(), name, &digest));
    }
    let id = state.store.start_upload(name).await?;
    Ok(accepted(
        state,
        req.headers(),
        name,
        &id,
        0,
        StatusCode::ACCEPTED,
    ))
}

pub async fn status(state: &AppState, name: &RepoName, id: &str, req: &Head) -> ApiResult {
    let offset = state.store.upload_offset(name, id).await?;
    Ok(accepted(
        state,
        req.headers(),
        name,
        id,
        offset,
        StatusCode::NO_CONTENT,
    ))
}

pub async fn patch(
    state: &AppState,
    name: &RepoName,
    id: &str,
    req: &Head,
    body: axum::body::Body,
) -> ApiResult {
    let range = chunk_range(req.headers())?;
    let offset = state
        .store
        .append_upload(name, id, range, body_stream(body))
        .await?;
    Ok(accepted(
        state,
        req.headers(),
        name,
        id,
        offset,
        StatusCode::ACCEPTED,
    ))
}

pub async fn put(
    state: &AppState,
    name: &RepoName,
    id: &str,
    req: &Head,
    body: axum::body::Body,
) -> ApiResult {
    let params = query(req);
    let digest = parse_digest(param(&params, "digest").ok_or_else(|| {
        ApiError::DigestInvalid(
            "the digest query parameter is required to complete an upload".into(),
        )
    })?)?;
    // A final chunk may carry a Content-Range; it must continue where the upload is.
    let range = chunk_range(req.headers())?;
    state
        .store
        .complete_upload(name, id, &digest, range, body_stream(body))
        .await?;
    Ok(created(state, req.headers(), name, &digest))
}

pub async fn cancel(state: &AppState, name: &RepoName, id: &str) -> ApiResult {
    state.store.cancel_upload(name, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    s.parse()
        .map_err(|e: crate::oci::DigestError| ApiError::DigestInvalid(e.to_string()))
}

/// The chunk's place from `Content-Range`, checked against `Content-Length`; the content
/// layer checks it against the body.
fn chunk_range(headers: &HeaderMap) -> Result<Option<ChunkRange>, ApiError> {
    let Some(range) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let range = range
        .to_str()
        .map_err(|_| ApiError::UploadInvalid("Content-Range is not ASCII".into()))?;
    let (start, len) = http::parse_content_range(range)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared
        && declared != len
    {
        return Err(ApiError::SizeInvalid(format!(
            "Content-Length {declared} does not match Content-Range {range:?} ({len} bytes)"
        )));
    }
    Ok(Some(ChunkRange { start, len }))
}

/// 201 for a blob now in the repository.
fn created(state: &AppState, headers: &HeaderMap, name: &RepoName, digest: &Digest) -> Response {
    let location = format!(
        "{}/v2/{name}/blobs/{digest}",
        state.urls.for_request(headers)
    );
    (
        StatusCode::CREATED,
        [
            (header::LOCATION, value(location)),
            (CONTENT_DIGEST, value(digest.to_string())),
        ],
    )
        .into_response()
}

/// 202/204 describing an upload session in progress.
fn accepted(
    state: &AppState,
    headers: &HeaderMap,
    name: &RepoName,
    id: &str,
    offset: u64,
    status: StatusCode,
) -> Response {
    let location = format!(
        "{}/v2/{name}/blobs/uploads/{id}",
        state.urls.for_request(headers)
    );
    (
        status,
        [
            (header::LOCATION, value(location)),
            (
                header::RANGE,
                value(format!("0-{}", offset.saturating_sub(1))),
            ),
            (UPLOAD_UUID, value(id)),
        ],
    )
        .into_response()
}
