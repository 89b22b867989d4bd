//! What `http.debug`'s `/metrics` serves: the list of metric names Dockyard exports (the
//! Helm chart's dashboard may query only these), and the garbage collector's counters.
//! The other metrics live with what they measure: [`crate::registry::metrics`] (HTTP),
//! [`crate::storage::metered`] (storage actions) and [`crate::proxy::metrics`] (the mirror).
//! `serve::build_state` registers them all in one registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Names Dockyard shares with registry:2 (distribution 2.8), with its labels.
pub const SHARED_WITH_REGISTRY2: &[&str] = &[
    "registry_http_requests_total",
    "registry_http_request_duration_seconds",
    "registry_http_request_size_bytes",
    "registry_http_response_size_bytes",
    "registry_http_in_flight_requests",
    "registry_storage_action_seconds",
];

/// Every metric family Dockyard exports, as queried (counters with `_total`; histograms
/// without their `_bucket`, `_sum` and `_count` suffixes). The mirror's only in mirror mode.
pub const EXPORTED: &[&str] = &[
    "registry_http_requests_total",
    "registry_http_request_duration_seconds",
    "registry_http_request_size_bytes",
    "registry_http_response_size_bytes",
    "registry_http_in_flight_requests",
    "registry_storage_action_seconds",
    "dockyard_blob_bytes_total",
    "dockyard_uploads_in_progress",
    "dockyard_gc_runs_total",
    "dockyard_gc_freed_bytes_total",
    "dockyard_gc_deleted_blobs_total",
    "dockyard_catalog_repositories",
    "dockyard_catalog_index_bytes",
    "registry_proxy_requests_total",
    "registry_proxy_hits_total",
    "registry_proxy_misses_total",
    "registry_proxy_pulled_bytes_total",
    "registry_proxy_pushed_bytes_total",
    "dockyard_proxy_coalesced_total",
    "dockyard_proxy_upstream_errors_total",
    "dockyard_proxy_cache_bytes",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

/// The garbage collector's counters: `dockyard_gc_runs_total{result}`,
/// `dockyard_gc_freed_bytes_total` and `dockyard_gc_deleted_blobs_total`. Clones count into
/// the same series.
#[derive(Clone, Debug)]
pub struct GcMetrics {
    runs: Family<ResultLabels, Counter>,
    freed_bytes: Counter,
    deleted_blobs: Counter,
}

impl GcMetrics {
    /// The counters, registered in `registry`.
    pub fn new(registry: &mut Registry) -> GcMetrics {
        let metrics = GcMetrics {
            runs: Family::default(),
            freed_bytes: Counter::default(),
            deleted_blobs: Counter::default(),
        };
        let gc = registry.sub_registry_with_prefix("dockyard_gc");
        gc.register(
            "runs",
            "Garbage collection runs, by result",
            metrics.runs.clone(),
        );
        gc.register(
            "freed_bytes",
            "Bytes of blobs garbage collection deleted",
            metrics.freed_bytes.clone(),
        );
        gc.register(
            "deleted_blobs",
            "Blobs garbage collection deleted",
            metrics.deleted_blobs.clone(),
        );
        metrics
    }

    /// Counts one attempt; `result` is one of a few fixed words (the scheduler's
    /// `collected`, `busy` or `failed`).
    pub fn run(&self, result: &str) {
        self.runs
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Counts blobs deleted and their bytes.
    pub fn freed(&self, bytes: u64, blobs: u64) {
        self.freed_bytes.inc_by(bytes);
        self.deleted_blobs.inc_by(blobs);
    }
}

/// The repository name index: `dockyard_catalog_repositories` and an estimate of its
/// memory, `dockyard_catalog_index_bytes`, set as it is refreshed.
#[derive(Clone, Debug, Default)]
pub struct IndexMetrics {
    repositories: Gauge,
    bytes: Gauge,
}

impl IndexMetrics {
    pub fn new(registry: &mut Registry) -> IndexMetrics {
        let metrics = IndexMetrics::default();
        let catalog = registry.sub_registry_with_prefix("dockyard_catalog");
        catalog.register(
            "repositories",
            "Repositories in the name index",
            metrics.repositories.clone(),
        );
        catalog.register(
            "index_bytes",
            "Estimated memory of the name index",
            metrics.bytes.clone(),
        );
        metrics
    }

    pub fn observe(&self, index: &crate::content::NameIndex) {
        self.repositories.set(index.len() as i64);
        self.bytes.set(index.approx_bytes() as i64);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The families a scrape declares, named as queried.
    fn declared(text: &str) -> BTreeSet<String> {
        text.lines()
            .filter_map(|line| {
                let mut words = line.strip_prefix("# TYPE ")?.split(' ');
                let (name, kind) = (words.next()?, words.next()?);
                Some(match kind {
                    "counter" => format!("{name}_total"),
                    _ => name.to_owned(),
                })
            })
            .collect()
    }

    /// A server's registry with one sample in every family (an empty one is not shown).
    async fn scraped_after_some_use() -> String {
        use std::sync::Arc;
        use tower::ServiceExt;

        use crate::content::{Content, ContentOptions};
        use crate::registry::{AppState, http::UrlBase, metrics, router};
        use crate::storage::memory::MemoryDriver;
        use crate::storage::metered::{Metered, StorageMetrics};

        let mut registry = Registry::default();
        let storage = StorageMetrics::new(&mut registry);
        let driver = Arc::new(Metered::new(Arc::new(MemoryDriver::new()), &storage));
        let http = Arc::new(metrics::HttpMetrics::new(&mut registry));
        let content = Content::new(driver, ContentOptions::default());
        let app = router(AppState {
            store: Arc::new(content),
            urls: UrlBase::default(),
            auth: None,
        });
        let req = axum::http::Request::get("/v2/a/tags/list")
            .body(axum::body::Body::empty())
            .unwrap();
        drop(metrics::instrument(app, http).oneshot(req).await.unwrap());
        let gc = GcMetrics::new(&mut registry);
        gc.run("collected");
        IndexMetrics::new(&mut registry).observe(&crate::content::NameIndex::default());
        let proxy = crate::proxy::metrics::ProxyMetrics::default();
        proxy.register(&mut registry);
        for family in [
            &proxy.requests,
            &proxy.hits,
            &proxy.misses,
            &proxy.pulled_bytes,
            &proxy.pushed_bytes,
            &proxy.coalesced,
        ] {
            crate::proxy::metrics::ProxyMetrics::count(family, "upstream.test", "blob", 1);
        }
        proxy
            .upstream_errors
            .get_or_create(&crate::proxy::metrics::ErrorLabels {
                upstream: "upstream.test".into(),
                kind: "other".into(),
            })
            .inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[tokio::test]
    async fn exported_lists_every_family_a_server_registers() {
        let text = scraped_after_some_use().await;
        let exported: BTreeSet<String> = EXPORTED.iter().map(|s| s.to_string()).collect();
        assert_eq!(declared(&text), exported);
        assert!(
            SHARED_WITH_REGISTRY2
                .iter()
                .all(|name| EXPORTED.contains(name))
        );
    }

    #[test]
    fn gc_counts_runs_by_result_and_what_it_freed() {
        let mut registry = Registry::default();
        let gc = GcMetrics::new(&mut registry);
        gc.clone().run("collected");
        gc.run("collected");
        gc.run("failed");
        gc.freed(1000, 2);
        gc.freed(24, 1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "dockyard_gc_runs_total{result=\"collected\"} 2",
            "dockyard_gc_runs_total{result=\"failed\"} 1",
            "dockyard_gc_freed_bytes_total 1024",
            "dockyard_gc_deleted_blobs_total 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
