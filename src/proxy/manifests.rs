//! Manifests through the mirror. Digests are immutable: a cached one is served as it is,
//! never revalidated. A tag is checked upstream by HEAD (HEADs do not count against Docker
//! Hub's pull limit) at most once per freshness interval; when the upstream cannot answer,
//! a cached tag is served stale with a log line. An uncached manifest is fetched whole
//! (they are small and bounded), checked against its digest and stored with its exact bytes;
//! a HEAD of one is answered from the upstream's headers without fetching it.

use std::time::Instant;

use axum::http::{Method, header};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use super::Mirror;
use super::metrics::ProxyMetrics;
use super::upstream::UpstreamError;
use crate::content::{ContentError, Manifest, Result};
use crate::oci::manifest::{self, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::oci::{Digest, Reference, RepoName, Tag};

/// The manifest types the mirror asks upstreams for.
const ACCEPT: &[&str] = &[OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

/// What an upstream said about a manifest without sending it.
struct Described {
    digest: Digest,
    media_type: String,
    size: u64,
}

impl Mirror {
    pub(super) async fn manifest(
        &self,
        name: &RepoName,
        reference: &Reference,
        head: bool,
    ) -> Result<Manifest> {
        let m = self.manifest_uncounted(name, reference, head).await?;
        if !m.bytes.is_empty() {
            // A manifest's references are read once; later uses only refresh its time.
            let refs = (!self.cache.has_refs(&m.digest)).then(|| {
                manifest::parse(&m.bytes, Some(&m.media_type))
                    .map(|p| p.references())
                    .unwrap_or_default()
            });
            self.cache.touch(&m.digest, name, m.size, refs);
        }
        Ok(m)
    }

    async fn manifest_uncounted(
        &self,
        name: &RepoName,
        reference: &Reference,
        head: bool,
    ) -> Result<Manifest> {
        let (upstream, _) = self.upstream_of(name)?;
        ProxyMetrics::count(&self.metrics.requests, &upstream.host, "manifest", 1);
        let hit = || ProxyMetrics::count(&self.metrics.hits, &upstream.host, "manifest", 1);
        match reference {
            Reference::Digest(digest) => match self.local.get_manifest(name, reference).await {
                Ok(m) => {
                    hit();
                    Ok(m)
                }
                Err(ContentError::ManifestUnknown(_)) => {
                    self.fetch_manifest(name, digest, None, head).await
                }
                Err(e) => Err(e),
            },
            Reference::Tag(tag) => {
                let (m, cached) = self.tagged(name, tag, head).await?;
                if cached {
                    hit();
                }
                Ok(m)
            }
        }
    }

    /// A manifest by tag, and whether it came from the cache.
    async fn tagged(&self, name: &RepoName, tag: &Tag, head: bool) -> Result<(Manifest, bool)> {
        let key = (name.to_string(), tag.to_string());
        let fresh = self
            .validated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .is_some_and(|at| at.elapsed() < self.settings.freshness);
        let reference = Reference::Tag(tag.clone());
        if fresh && let Ok(m) = self.local.get_manifest(name, &reference).await {
            return Ok((m, true));
        }
        let described = match self.describe(name, tag.as_str()).await {
            Ok(d) => d,
            Err(e) if e.is_not_found() => {
                return Err(ContentError::ManifestUnknown(tag.to_string()));
            }
            Err(e) => {
                // The upstream cannot answer: a cached tag is better than none.
                if let Ok(m) = self.local.get_manifest(name, &reference).await {
                    tracing::warn!(repository = %name, tag = %tag, error = %e, "upstream unavailable; serving the cached tag, possibly stale");
                    return Ok((m, true));
                }
                return Err(e.into());
            }
        };
        self.validated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Instant::now());
        let by_digest = Reference::Digest(described.digest.clone());
        if let Ok(m) = self.local.get_manifest(name, &by_digest).await {
            // Only a tag that moved upstream is written again.
            let current = self.local.resolve(name, &reference).await.ok();
            if current.as_ref() != Some(&m.digest) {
                self.local
                    .cache_manifest(name, &m.digest, Some(tag), m.bytes.clone(), &m.media_type)
                    .await?;
            }
            return Ok((m, true));
        }
        if head {
            let m = Manifest {
                digest: described.digest,
                media_type: described.media_type,
                size: described.size,
                bytes: Bytes::new(),
            };
            return Ok((m, false));
        }
        let m = self
            .fetch_manifest(name, &described.digest, Some(tag), false)
            .await?;
        Ok((m, false))
    }

    /// Sends `method` for manifest `reference` of `name` to its upstream.
    async fn ask(
        &self,
        name: &RepoName,
        method: Method,
        reference: &str,
    ) -> std::result::Result<
        (
            std::sync::Arc<super::Upstream>,
            hyper::Response<hyper::body::Incoming>,
        ),
        UpstreamError,
    > {
        // Callers have routed `name` already (`manifest` does first); this cannot fail then.
        let (upstream, remote) =
            self.upstream_of(name)
                .map_err(|e| UpstreamError::Unreachable {
                    host: name.to_string(),
                    reason: e.to_string(),
                })?;
        let path = format!("/v2/{remote}/manifests/{reference}");
        let resp = upstream.send(method, &path, &remote, ACCEPT).await?;
        Ok((upstream, resp))
    }

    /// HEAD of a manifest upstream: its digest, type and size.
    async fn describe(
        &self,
        name: &RepoName,
        reference: &str,
    ) -> std::result::Result<Described, UpstreamError> {
        let (_, resp) = self.ask(name, Method::HEAD, reference).await?;
        let headers = resp.headers();
        let text = |h| {
            headers
                .get(h)
                .and_then(|v: &axum::http::HeaderValue| v.to_str().ok())
        };
        let digest = text(header::HeaderName::from_static("docker-content-digest"))
            .and_then(|d| d.parse::<Digest>().ok());
        let media_type = text(header::CONTENT_TYPE).map(|t| manifest::essence(t).to_owned());
        let size = text(header::CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok());
        match (digest, media_type, size) {
            (Some(digest), Some(media_type), Some(size)) => Ok(Described {
                digest,
                media_type,
                size,
            }),
            // An upstream that does not describe its manifests on HEAD: fetch it instead.
            _ => {
                let (bytes, media_type) = self.get_bytes(name, reference).await?;
                let digest = match reference.parse::<Digest>() {
                    Ok(d) => d,
                    Err(_) => Digest::of(crate::oci::Algorithm::Sha256, &bytes),
                };
                Ok(Described {
                    digest,
                    media_type,
                    size: bytes.len() as u64,
                })
            }
        }
    }

    /// GETs a manifest by digest, checks it, stores it (under `tag` too) and returns it; with
    /// `head`, an uncached manifest is only described.
    async fn fetch_manifest(
        &self,
        name: &RepoName,
        digest: &Digest,
        tag: Option<&Tag>,
        head: bool,
    ) -> Result<Manifest> {
        let unknown = |e: UpstreamError| {
            if e.is_not_found() {
                ContentError::ManifestUnknown(digest.to_string())
            } else {
                e.into()
            }
        };
        if head {
            let d = self
                .describe(name, &digest.to_string())
                .await
                .map_err(unknown)?;
            return Ok(Manifest {
                digest: digest.clone(),
                media_type: d.media_type,
                size: d.size,
                bytes: Bytes::new(),
            });
        }
        let (bytes, media_type) = self
            .get_bytes(name, &digest.to_string())
            .await
            .map_err(unknown)?;
        let (upstream, _) = self.upstream_of(name)?;
        ProxyMetrics::count(&self.metrics.misses, &upstream.host, "manifest", 1);
        let pulled = bytes.len() as u64;
        ProxyMetrics::count(
            &self.metrics.pulled_bytes,
            &upstream.host,
            "manifest",
            pulled,
        );
        let actual = Digest::of(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(ContentError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let media_type = match manifest::declared_media_type(&bytes) {
            Some(declared) => declared,
            None => media_type,
        };
        self.local
            .cache_manifest(name, digest, tag, bytes.clone(), &media_type)
            .await?;
        Ok(Manifest {
            digest: digest.clone(),
            media_type,
            size: bytes.len() as u64,
            bytes,
        })
    }

    /// A manifest's bytes and Content-Type, at most the manifest size limit.
    async fn get_bytes(
        &self,
        name: &RepoName,
        reference: &str,
    ) -> std::result::Result<(Bytes, String), UpstreamError> {
        let (upstream, resp) = self.ask(name, Method::GET, reference).await?;
        let media_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map_or_else(
                || OCI_MANIFEST.to_owned(),
                |t| manifest::essence(t).to_owned(),
            );
        let limit = self.local.options.max_manifest_size;
        let mut body = resp.into_body();
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| UpstreamError::Unreachable {
                host: upstream.host.clone(),
                reason: format!("manifest body: {e}"),
            })?;
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
                if buf.len() as u64 > limit {
                    return Err(UpstreamError::Unreachable {
                        host: upstream.host.clone(),
                        reason: format!("manifest larger than {limit} bytes"),
                    });
                }
            }
        }
        Ok((buf.freeze(), media_type))
    }
}
