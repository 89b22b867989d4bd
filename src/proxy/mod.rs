//! The pull-through cache: [`Mirror`], a decorator over [`Content`] that implements the same
//! [`Store`], so the HTTP handlers do not know whether they serve a registry or a mirror.
//! It serves what is cached and fetches the rest from the upstreams of [`settings`]:
//! manifests in [`manifests`], blobs through the single-flight fetches of [`flight`], each
//! upstream over [`upstream`] with the token flow of [`challenge`]. Pushes and deletes are
//! refused, as registry:2 does in proxy mode.

pub mod cache;
pub mod challenge;
mod client;
mod flight;
mod manifests;
pub mod metrics;
pub mod settings;
mod tail;
pub mod upstream;
mod usage;
mod verify;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::http::{Method, header};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;

use crate::content::{
    BlobRange, BlobWant, Body, ChunkRange, Content, ContentError, Manifest, OpenedBlob,
    PutManifest, Result, Store, resolve_range,
};
use crate::oci::manifest::Descriptor;
use crate::oci::{Digest, Reference, RepoName, Tag};
use flight::Flights;
pub use settings::Settings;
pub use upstream::{Upstream, UpstreamError};
pub use usage::UpstreamUsage;

/// A registry mirror over local content.
pub struct Mirror {
    local: Content,
    settings: Settings,
    upstreams: Vec<Arc<Upstream>>,
    flights: Arc<Flights>,
    /// When each (repository, tag) was last checked upstream.
    validated: Mutex<HashMap<(String, String), Instant>>,
    metrics: Arc<metrics::ProxyMetrics>,
    /// What is cached, for expiry and the size limit.
    cache: cache::CacheIndex,
    /// Blobs being served now, with how many readers: never evicted.
    serving: Arc<Mutex<HashMap<Digest, usize>>>,
    /// Wakes the eviction when a fetch takes the cache past its size limit.
    over_size: tokio::sync::Notify,
}

impl Mirror {
    pub fn new(
        local: Content,
        settings: Settings,
        metrics: Arc<metrics::ProxyMetrics>,
    ) -> std::result::Result<Mirror, String> {
        let upstreams = settings
            .upstreams
            .iter()
            .map(|spec| {
                Upstream::new(spec, metrics.clone())
                    .map(Arc::new)
                    .map_err(|e| format!("upstream {}: {e}", spec.host))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Mirror {
            local,
            settings,
            upstreams,
            flights: Arc::new(Flights::default()),
            validated: Mutex::new(HashMap::new()),
            metrics,
            cache: cache::CacheIndex::default(),
            serving: Arc::new(Mutex::new(HashMap::new())),
            over_size: tokio::sync::Notify::new(),
        })
    }

    /// Keeps the cache within `proxy.ttl` and `proxy.maxsize`: rebuilds the index from
    /// storage, then evicts once a minute. Runs until dropped.
    pub async fn maintain(self: Arc<Self>) {
        if self.settings.ttl.is_none() && self.settings.max_size.is_none() {
            return;
        }
        match self.local.inventory().await {
            Ok(items) => {
                for item in items {
                    self.cache.record(
                        &item.digest,
                        &item.repo,
                        item.size,
                        item.refs,
                        item.modified,
                    );
                }
                self.report_size();
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cache's contents; eviction covers only what is used from now on")
            }
        }
        // At least twice per ttl, and at once when a fetch takes the cache past its limit.
        let every = self.settings.ttl.map_or(EVICTION_INTERVAL, |ttl| {
            (ttl / 2).clamp(Duration::from_millis(500), EVICTION_INTERVAL)
        });
        let mut ticks = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = self.over_size.notified() => {}
            }
            self.evict().await;
        }
    }

    /// One eviction round; returns the bytes freed.
    pub async fn evict(&self) -> u64 {
        let mut busy: std::collections::HashSet<Digest> = self.flights.running();
        busy.extend(
            self.serving
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned(),
        );
        let plan = self.cache.plan(
            std::time::SystemTime::now(),
            self.settings.ttl,
            self.settings.max_size,
            &busy,
        );
        let mut freed = 0;
        for e in plan {
            let removed = if e.manifest {
                self.local.evict_manifest(&e.digest, &e.repos).await
            } else {
                self.local.evict_blob(&e.digest, &e.repos).await
            };
            match removed {
                Ok(()) => {
                    self.cache.remove(&e.digest);
                    freed += e.size;
                }
                Err(err) => {
                    tracing::warn!(digest = %e.digest, error = %err, "cannot evict cached content")
                }
            }
        }
        self.report_size();
        if freed > 0 {
            tracing::info!(
                freed_bytes = freed,
                cached_bytes = self.cache.size(),
                "evicted cached content unused for proxy.ttl or past proxy.maxsize"
            );
        }
        freed
    }

    fn report_size(&self) {
        let bytes = i64::try_from(self.cache.size()).unwrap_or(i64::MAX);
        self.metrics.cache_bytes.set(bytes);
    }

    /// Marks a blob as being served (never evicted) until the guard is dropped.
    fn hold(&self, digest: &Digest) -> Serving {
        *self
            .serving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(digest.clone())
            .or_default() += 1;
        Serving {
            digest: digest.clone(),
            serving: self.serving.clone(),
        }
    }

    /// Wraps a blob stream so the blob counts as being served until the stream is dropped.
    fn serve(
        &self,
        digest: &Digest,
        stream: crate::storage::ByteStream,
    ) -> crate::storage::ByteStream {
        held(self.hold(digest), stream)
    }

    /// The upstream of a stored name and the name there.
    fn upstream_of(&self, name: &RepoName) -> Result<(Arc<Upstream>, String)> {
        let route = self.settings.route(name)?;
        Ok((self.upstreams[route.upstream].clone(), route.remote))
    }

    async fn blob(&self, name: &RepoName, digest: &Digest, want: BlobWant) -> Result<OpenedBlob> {
        let (upstream, remote) = self.upstream_of(name)?;
        let count = |family, n| metrics::ProxyMetrics::count(family, &upstream.host, "blob", n);
        count(&self.metrics.requests, 1);
        let cached = match self.local.read_blob(name, digest, want.clone()).await {
            Err(ContentError::BlobUnknown(_)) => None,
            other => Some(other),
        };
        // Fetched before for another repository: link it here.
        let cached = match cached {
            None if self.local.link_stored_blob(name, digest).await? => {
                Some(self.local.read_blob(name, digest, want.clone()).await)
            }
            other => other,
        };
        if let Some(found) = cached {
            let mut found = found?;
            count(&self.metrics.hits, 1);
            self.cache.touch(digest, name, found.size, None);
            if let Some(stream) = found.stream.take() {
                count(&self.metrics.pushed_bytes, served(&found));
                found.stream = Some(self.serve(digest, stream));
            }
            return Ok(found);
        }
        count(&self.metrics.misses, 1);
        let not_found = |e: UpstreamError| {
            if e.is_not_found() {
                ContentError::BlobUnknown(digest.clone())
            } else {
                e.into()
            }
        };
        let range = match want {
            BlobWant::Head => {
                // Answered from the upstream, never a false 404 (chained mirrors ask first).
                let path = format!("/v2/{remote}/blobs/{digest}");
                let resp = upstream
                    .send(Method::HEAD, &path, &remote, &[])
                    .await
                    .map_err(not_found)?;
                let size = content_length(resp.headers()).unwrap_or(0);
                let _ = resp.into_body().collect().await;
                return Ok(OpenedBlob {
                    size,
                    range: None,
                    stream: None,
                    redirect: None,
                });
            }
            BlobWant::Body { range } => range,
        };
        let (flight, joined) = self
            .flights
            .join(&self.local, &upstream, name, &remote, digest)
            .await?;
        if joined {
            count(&self.metrics.coalesced, 1);
            tracing::debug!(repository = %name, digest = %digest, "joined a fetch in progress");
        }
        // Held before waiting: once the fetch commits, eviction must not take the blob from
        // under a client that has not started reading it yet.
        let guard = self.hold(digest);
        let size = flight.size().await.map_err(|reason| {
            if reason.contains("404") {
                ContentError::BlobUnknown(digest.clone())
            } else {
                UpstreamError::Unreachable {
                    host: upstream.host.clone(),
                    reason,
                }
                .into()
            }
        })?;
        let resolved = match &range {
            Some(value) => Some(resolve_range(value, size).ok_or_else(|| {
                ContentError::RangeNotSatisfiable {
                    range: value.clone(),
                    size,
                }
            })?),
            None => None,
        };
        let whole = BlobRange {
            start: 0,
            end: size.saturating_sub(1),
        };
        let stream = match size {
            0 => futures::stream::empty().boxed(),
            _ => flight.stream(
                self.local.clone(),
                digest.clone(),
                resolved.unwrap_or(whole),
            ),
        };
        self.cache.touch(digest, name, size, None);
        self.report_size();
        if self
            .settings
            .max_size
            .is_some_and(|max| self.cache.size() > max)
        {
            self.over_size.notify_one();
        }
        let opened = OpenedBlob {
            size,
            range: resolved,
            stream: Some(held(guard, stream)),
            redirect: None,
        };
        count(&self.metrics.pushed_bytes, served(&opened));
        Ok(opened)
    }

    /// Tags as the upstream lists them; the cached ones when it cannot answer.
    async fn upstream_tags(&self, name: &RepoName) -> Result<Vec<Tag>> {
        let (upstream, remote) = self.upstream_of(name)?;
        let path = format!("/v2/{remote}/tags/list");
        let listed = async {
            let resp = upstream.send(Method::GET, &path, &remote, &[]).await?;
            let body =
                resp.into_body()
                    .collect()
                    .await
                    .map_err(|e| UpstreamError::Unreachable {
                        host: upstream.host.clone(),
                        reason: e.to_string(),
                    })?;
            Ok::<Bytes, UpstreamError>(body.to_bytes())
        };
        match listed.await {
            Ok(body) => {
                #[derive(serde::Deserialize)]
                struct List {
                    tags: Option<Vec<String>>,
                }
                let list: List = serde_json::from_slice(&body).unwrap_or(List { tags: None });
                let mut tags: Vec<Tag> = list
                    .tags
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|t| t.parse().ok())
                    .collect();
                tags.sort();
                Ok(tags)
            }
            Err(e) if e.is_not_found() => Err(ContentError::NameUnknown(name.clone())),
            Err(e) => match self.local.tags(name).await {
                Ok(tags) => {
                    tracing::warn!(repository = %name, error = %e, "upstream unavailable; listing the cached tags");
                    Ok(tags)
                }
                Err(_) => Err(e.into()),
            },
        }
    }
}

impl Mirror {
    /// The upstream's referrers of `subject` (its answer is an OCI index).
    async fn upstream_referrers(
        &self,
        name: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> std::result::Result<Vec<Descriptor>, String> {
        let (upstream, remote) = self.upstream_of(name).map_err(|e| e.to_string())?;
        let mut path = format!("/v2/{remote}/referrers/{subject}");
        if let Some(t) = artifact_type {
            path.push_str(&format!("?artifactType={}", t.replace('+', "%2B")));
        }
        let resp = upstream
            .send(
                Method::GET,
                &path,
                &remote,
                &[crate::oci::manifest::OCI_INDEX],
            )
            .await
            .map_err(|e| e.to_string())?;
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let index: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        Ok(manifests
            .iter()
            .filter_map(|m| {
                Some(Descriptor {
                    media_type: m["mediaType"].as_str()?.to_owned(),
                    digest: m["digest"].as_str()?.parse().ok()?,
                    size: m["size"].as_u64()?,
                    artifact_type: m["artifactType"].as_str().map(str::to_owned),
                    annotations: serde_json::from_value(m["annotations"].clone()).ok(),
                })
            })
            .filter(|d| artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t)))
            .collect())
    }
}

/// How often the cache is checked against `proxy.ttl` and `proxy.maxsize`.
const EVICTION_INTERVAL: Duration = Duration::from_secs(60);

/// A stream that keeps `guard` until it is dropped.
fn held(guard: Serving, stream: crate::storage::ByteStream) -> crate::storage::ByteStream {
    stream
        .map(move |chunk| {
            let _ = &guard;
            chunk
        })
        .boxed()
}

/// Counts a blob as served while alive.
struct Serving {
    digest: Digest,
    serving: Arc<Mutex<HashMap<Digest, usize>>>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let mut serving = self.serving.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = serving.get_mut(&self.digest) {
            *n -= 1;
            if *n == 0 {
                serving.remove(&self.digest);
            }
        }
    }
}

/// The bytes a blob read serves.
fn served(blob: &OpenedBlob) -> u64 {
    blob.range.map_or(blob.size, |r| r.end - r.start + 1)
}

fn content_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
}

#[async_trait]
impl Store for Mirror {
    fn local_name(&self, name: RepoName, ns: Option<&str>) -> Result<RepoName> {
        Ok(self.settings.local_name(&name, ns)?)
    }

    async fn read_blob(
        &self,
        name: &RepoName,
        digest: &Digest,
        want: BlobWant,
    ) -> Result<OpenedBlob> {
        self.blob(name, digest, want).await
    }

    async fn read_manifest(
        &self,
        name: &RepoName,
        reference: &Reference,
        head: bool,
    ) -> Result<Manifest> {
        self.manifest(name, reference, head).await
    }

    async fn tags(&self, name: &RepoName) -> Result<Vec<Tag>> {
        self.upstream_tags(name).await
    }

    async fn referrers(
        &self,
        name: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        match self.upstream_referrers(name, subject, artifact_type).await {
            Ok(found) => Ok(found),
            // An upstream without the referrers API, or one that is down: what is cached.
            Err(e) => {
                tracing::debug!(repository = %name, error = %e, "referrers from the cache");
                self.local.referrers(name, subject, artifact_type).await
            }
        }
    }

    fn names(&self) -> Arc<crate::content::NameIndex> {
        self.local.names()
    }

    fn max_manifest_size(&self) -> u64 {
        self.local.options.max_manifest_size
    }

    async fn put_manifest(
        &self,
        _: &RepoName,
        _: &Reference,
        _: &[Tag],
        _: Bytes,
        _: Option<&str>,
    ) -> Result<PutManifest> {
        Err(ContentError::Mirror)
    }

    async fn delete_manifest(&self, _: &RepoName, _: &Reference) -> Result<()> {
        Err(ContentError::Mirror)
    }

    async fn mount_blob(&self, _: &RepoName, _: &Digest, _: &RepoName) -> Result<bool> {
        Err(ContentError::Mirror)
    }

    async fn delete_blob(&self, _: &RepoName, _: &Digest) -> Result<()> {
        Err(ContentError::Mirror)
    }

    async fn put_blob(&self, _: &RepoName, _: &Digest, _: Body) -> Result<()> {
        Err(ContentError::Mirror)
    }

    async fn start_upload(&self, _: &RepoName) -> Result<String> {
        Err(ContentError::Mirror)
    }

    async fn upload_offset(&self, _: &RepoName, _: &str) -> Result<u64> {
        Err(ContentError::Mirror)
    }

    async fn append_upload(
        &self,
        _: &RepoName,
        _: &str,
        _: Option<ChunkRange>,
        _: Body,
    ) -> Result<u64> {
        Err(ContentError::Mirror)
    }

    async fn complete_upload(
        &self,
        _: &RepoName,
        _: &str,
        _: &Digest,
        _: Option<ChunkRange>,
        _: Body,
    ) -> Result<()> {
        Err(ContentError::Mirror)
    }

    async fn cancel_upload(&self, _: &RepoName, _: &str) -> Result<()> {
        Err(ContentError::Mirror)
    }
}
