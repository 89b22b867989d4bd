//! What the mirror holds and serves per upstream, for the web UI's mirror table: cached bytes
//! and last use from the [`super::cache::CacheIndex`], hits and misses from the
//! [`super::metrics::ProxyMetrics`]. Reads only memory; never asks an upstream.

use std::collections::HashMap;
use std::time::SystemTime;

use super::Mirror;
use super::metrics::Labels;
use crate::oci::RepoName;

/// One upstream's share of the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUsage {
    pub host: String,
    /// Bytes cached for repositories `visible` accepted.
    pub bytes: u64,
    /// When content of those repositories was last used, if any is cached.
    pub last_pulled: Option<SystemTime>,
    /// Requests served from the cache.
    pub hits: u64,
    /// Requests that went upstream.
    pub misses: u64,
}

impl Mirror {
    /// The upstream host a cached repository came from.
    pub fn upstream_host(&self, name: &RepoName) -> Option<&str> {
        let route = self.settings.route(name).ok()?;
        Some(self.settings.upstreams[route.upstream].host.as_str())
    }

    /// Each upstream's usage, in configuration order; bytes count only repositories that
    /// `visible` accepts.
    pub fn usage(&self, visible: impl Fn(&RepoName) -> bool) -> Vec<UpstreamUsage> {
        let by_upstream: HashMap<usize, _> = self.cache.usage(|repo| {
            visible(repo)
                .then(|| self.settings.route(repo).ok())
                .flatten()
                .map(|r| r.upstream)
        });
        let count = |family: &prometheus_client::metrics::family::Family<
            Labels,
            prometheus_client::metrics::counter::Counter,
        >,
                     host: &str| {
            ["blob", "manifest"]
                .iter()
                .filter_map(|kind| {
                    let labels = Labels {
                        upstream: host.to_owned(),
                        r#type: (*kind).to_owned(),
                    };
                    family.get(&labels).map(|c| c.get())
                })
                .sum::<u64>()
        };
        self.settings
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let used = by_upstream.get(&i);
                UpstreamUsage {
                    host: spec.host.clone(),
                    bytes: used.map_or(0, |u| u.bytes),
                    last_pulled: used.map(|u| u.last_used),
                    hits: count(&self.metrics.hits, &spec.host),
                    misses: count(&self.metrics.misses, &spec.host),
                }
            })
            .collect()
    }
}
