//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use axum::response::IntoResponse;
use bytes::BytesMut;
use futures::StreamExt;

use super::http::{self, CONTENT_DIGEST, OCI_SUBJECT, OCI_TAG, value};
use super::{ApiError, ApiResult, AppState, Head, query};
use crate::content::ContentError;
use crate::oci::{Reference, RepoName, RouteError, Tag};

pub async fn get(
    state: &AppState,
    name: &RepoName,
    reference: &Reference,
    req: &Head,
) -> ApiResult {
    let head = req.method() == Method::HEAD;
    let m = state.store.read_manifest(name, reference, head).await?;
    let (builder, fresh) = http::digest_response(&m.digest, &m.media_type, req.headers());
    if fresh {
        return Ok(builder.body(Body::empty()).unwrap_or_default());
    }
    let builder = builder.header(header::CONTENT_LENGTH, m.size);
    let body = if head {
        Body::empty()
    } else {
        Body::from(m.bytes)
    };
    Ok(builder.body(body).unwrap_or_default())
}

pub async fn put(
    state: &AppState,
    name: &RepoName,
    reference: &Reference,
    req: &Head,
    body: Body,
) -> ApiResult {
    // OCI `?tag=a&tag=b`: store under those tags as well; all are checked before any write.
    let extra_tags = query(req)
        .into_iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v.parse::<Tag>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::Route(RouteError::Reference(e)))?;
    let limit = state.store.max_manifest_size();
    let too_large = |size| ApiError::Content(ContentError::ManifestTooLarge { size, limit });
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(size) = declared.filter(|&s| s > limit) {
        return Err(too_large(size));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let base = state.urls.for_request(req.headers());
    // Read at most limit+1 bytes, so an oversized body is refused without buffering it.
    let mut body = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::Content(ContentError::Body(std::io::Error::other(e))))?;
        buf.extend_from_slice(&chunk);
        if buf.len() as u64 > limit {
            return Err(too_large(buf.len() as u64));
        }
    }
    let stored = state
        .store
        .put_manifest(
            name,
            reference,
            &extra_tags,
            buf.freeze(),
            content_type.as_deref(),
        )
        .await?;
    let location = format!("{base}/v2/{name}/manifests/{}", stored.digest);
    let mut resp = (
        StatusCode::CREATED,
        [
            (header::LOCATION, value(location)),
            (CONTENT_DIGEST, value(stored.digest.to_string())),
        ],
    )
        .into_response();
    if let Some(subject) = stored.subject {
        resp.headers_mut()
            .insert(OCI_SUBJECT, value(subject.to_string()));
    }
    if !extra_tags.is_empty() {
        for tag in &stored.tags {
            resp.headers_mut().append(OCI_TAG, value(tag.as_str()));
        }
    }
    Ok(resp)
}

pub async fn delete(state: &AppState, name: &RepoName, reference: &Reference) -> ApiResult {
    state.store.delete_manifest(name, reference).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}
