//! Prometheus metrics of the mirror, per upstream, under registry:2's `registry_proxy_*`
//! names where it has them (`requests`, `hits`, `misses`, `pulled_bytes` from upstream,
//! `pushed_bytes` to clients), plus Dockyard's coalesced waits and upstream errors by kind.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Labels {
    pub upstream: String,
    /// `blob` or `manifest`.
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub upstream: String,
    /// `unreachable`, `rate_limited`, `server_error`, `not_found`, `unauthorized`, `other`.
    pub kind: String,
}

#[derive(Default)]
pub struct ProxyMetrics {
    pub requests: Family<Labels, Counter>,
    pub hits: Family<Labels, Counter>,
    pub misses: Family<Labels, Counter>,
    pub pulled_bytes: Family<Labels, Counter>,
    pub pushed_bytes: Family<Labels, Counter>,
    pub coalesced: Family<Labels, Counter>,
    pub upstream_errors: Family<ErrorLabels, Counter>,
    /// Bytes the cache holds (what it knows of: see `cache`).
    pub cache_bytes: Gauge,
}

impl ProxyMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let proxy = registry.sub_registry_with_prefix("registry_proxy");
        proxy.register(
            "requests",
            "Requests the mirror received",
            self.requests.clone(),
        );
        proxy.register("hits", "Requests served from the cache", self.hits.clone());
        proxy.register(
            "misses",
            "Requests that went to the upstream",
            self.misses.clone(),
        );
        proxy.register(
            "pulled_bytes",
            "Bytes fetched from the upstream",
            self.pulled_bytes.clone(),
        );
        proxy.register(
            "pushed_bytes",
            "Bytes of fetched content served to clients",
            self.pushed_bytes.clone(),
        );
        let dockyard = registry.sub_registry_with_prefix("dockyard_proxy");
        dockyard.register(
            "coalesced",
            "Requests that joined a fetch already in progress",
            self.coalesced.clone(),
        );
        dockyard.register(
            "upstream_errors",
            "Upstream failures, by kind",
            self.upstream_errors.clone(),
        );
        dockyard.register(
            "cache_bytes",
            "Bytes of cached blobs and manifests",
            self.cache_bytes.clone(),
        );
    }

    pub fn count(family: &Family<Labels, Counter>, upstream: &str, kind: &str, n: u64) {
        family
            .get_or_create(&Labels {
                upstream: upstream.to_owned(),
                r#type: kind.to_owned(),
            })
            .inc_by(n);
    }

    pub fn error(&self, upstream: &str, error: &super::UpstreamError) {
        use super::UpstreamError as U;
        let kind = match error {
            U::Unreachable { .. } => "unreachable",
            U::Status { status: 429, .. } => "rate_limited",
            U::Status { status: 404, .. } => "not_found",
            U::Status { status, .. } if *status >= 500 => "server_error",
            U::Unauthorized { .. }
            | U::Status {
                status: 401 | 403, ..
            } => "unauthorized",
            U::Status { .. } => "other",
        };
        self.upstream_errors
            .get_or_create(&ErrorLabels {
                upstream: upstream.to_owned(),
                kind: kind.to_owned(),
            })
            .inc();
    }
}
