//! The mirror's settings, from registry:2's `proxy.remoteurl` (one upstream) or Dockyard's
//! `proxy.upstreams` (several, by host), and the routing of a request to an upstream: by
//! containerd's `?ns=<host>`, by a `<host>/` prefix on the repository name (CRI-O mirror
//! locations, containerd `override_path`), or to the default upstream (docker's
//! `registry-mirrors` sends neither). A host that is not configured is refused: never an
//! open proxy. Pure.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ProxyConfig, parse_go_duration};
use crate::oci::RepoName;

/// Docker Hub's API endpoint; clients name it `docker.io`.
const DOCKER_HUB_API: &str = "https://registry-1.docker.io";

/// One upstream registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSpec {
    /// The host clients name it by (`docker.io`, `ghcr.io`, `registry.example.com:5000`).
    pub host: String,
    /// Base URLs (`scheme://authority`), tried in order.
    pub endpoints: Vec<String>,
    pub credentials: Option<(String, String)>,
    pub ca: Option<PathBuf>,
    pub insecure: bool,
}

/// What the mirror does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub upstreams: Vec<UpstreamSpec>,
    /// The upstream of requests that name none.
    pub default: Option<usize>,
    /// Cached content is stored under `<host>/<name>` (several upstreams), or under the
    /// upstream's own names (registry:2's single upstream, its on-disk layout).
    pub prefix_names: bool,
    /// A tag is checked upstream at most this often.
    pub freshness: Duration,
    /// Cached content unused for this long is removed (registry:2's `proxy.ttl`); None keeps it.
    pub ttl: Option<Duration>,
    /// The cache's largest size in bytes, if limited.
    pub max_size: Option<u64>,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub upstream: usize,
    /// The repository's name at the upstream.
    pub remote: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error(
        "this mirror has no upstream {0:?}; it mirrors only the registries it is configured for"
    )]
    UnknownUpstream(String),
    #[error(
        "this mirror has no default upstream: name the registry with ?ns=<host> or a /v2/<host>/ prefix"
    )]
    NoDefault,
}

impl Settings {
    /// `None` when no proxy is configured; an error says what to fix.
    pub fn from_config(proxy: Option<&ProxyConfig>) -> Result<Option<Settings>, String> {
        let Some(p) = proxy else { return Ok(None) };
        let freshness = duration("proxy.freshness", p.freshness.as_deref(), 300)?;
        let ttl = match duration("proxy.ttl", p.ttl.as_deref(), 168 * 3600)? {
            d if d.is_zero() => None,
            d => Some(d),
        };
        let max_size = match &p.maxsize {
            None | Some(serde_yaml::Value::Null) => None,
            Some(value) => {
                let text = match value {
                    serde_yaml::Value::Number(n) => n.to_string(),
                    serde_yaml::Value::String(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                Some(super::cache::parse_size(&text).ok_or_else(|| {
                    format!("proxy.maxsize: {text:?} is not a size like 50GiB, 500MB or 1073741824")
                })?)
            }
        };
        let (upstreams, default, prefix_names) = match (&p.remoteurl, &p.upstreams) {
            (Some(_), Some(_)) => {
                return Err("set either proxy.remoteurl (one upstream, as registry:2) or proxy.upstreams, not both".into());
            }
            (None, None) => return Ok(None),
            (Some(url), None) => {
                let url = base_url(url)?;
                let host = host_of(&url);
                let credentials = p.username.clone().zip(p.password.clone());
                let spec = UpstreamSpec {
                    host: normalize_host(&host),
                    endpoints: vec![url],
                    credentials,
                    ca: None,
                    insecure: false,
                };
                (vec![spec], Some(0), false)
            }
            (None, Some(list)) => {
                let mut specs: Vec<UpstreamSpec> = Vec::new();
                let mut default = None;
                for (i, u) in list.iter().enumerate() {
                    let host = normalize_host(u.host.trim());
                    if host.is_empty() || host.contains('/') {
                        return Err(format!(
                            "proxy.upstreams[{i}].host {:?} must be a registry host such as docker.io or ghcr.io",
                            u.host
                        ));
                    }
                    if specs.iter().any(|s| s.host == host) {
                        return Err(format!(
                            "proxy.upstreams lists {host} twice: list each upstream once, with all its urls"
                        ));
                    }
                    let urls = if u.urls.is_empty() {
                        vec![default_url(&host)]
                    } else {
                        u.urls.clone()
                    };
                    let endpoints = urls
                        .iter()
                        .map(|url| {
                            base_url(url).map_err(|e| format!("proxy.upstreams[{i}] ({host}): {e}"))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    if u.default {
                        if default.is_some() {
                            return Err("only one of proxy.upstreams may be the default".into());
                        }
                        default = Some(i);
                    }
                    specs.push(UpstreamSpec {
                        host,
                        endpoints,
                        credentials: u.username.clone().zip(u.password.clone()),
                        ca: u.ca.clone(),
                        insecure: u.insecure,
                    });
                }
                if specs.is_empty() {
                    return Err("proxy.upstreams is empty: list at least one upstream".into());
                }
                if specs.len() == 1 {
                    default = Some(0);
                }
                (specs, default, true)
            }
        };
        Ok(Some(Settings {
            upstreams,
            default,
            prefix_names,
            freshness,
            ttl,
            max_size,
        }))
    }

    /// The name content is stored under for a request of `name` with `?ns=` value `ns`:
    /// `<host>/<name>` with several upstreams (a port's `:` becomes `_`, as names allow no
    /// colon), the upstream's own name with registry:2's single upstream.
    pub fn local_name(&self, name: &RepoName, ns: Option<&str>) -> Result<RepoName, RouteError> {
        let route = match ns.map(normalize_host).filter(|n| !n.is_empty()) {
            Some(ns) => {
                let upstream = self
                    .upstreams
                    .iter()
                    .position(|u| u.host == ns)
                    .ok_or_else(|| RouteError::UnknownUpstream(ns.clone()))?;
                Route {
                    upstream,
                    remote: docker_hub_library(&ns, name.as_str()),
                }
            }
            None => self.route(name)?,
        };
        let host = &self.upstreams[route.upstream].host;
        let local = if self.prefix_names {
            format!("{}/{}", host_segment(host), route.remote)
        } else {
            route.remote
        };
        local
            .parse()
            .map_err(|_| RouteError::UnknownUpstream(host.clone()))
    }

    /// The upstream of a stored name and the repository's name there.
    pub fn route(&self, local: &RepoName) -> Result<Route, RouteError> {
        let name = local.as_str();
        if self.prefix_names
            && let Some((first, rest)) = name.split_once('/')
            && looks_like_host(first)
        {
            let host = normalize_host(first);
            let found = self
                .upstreams
                .iter()
                .position(|u| host_segment(&u.host) == host || u.host == host);
            return match found {
                Some(upstream) => Ok(Route {
                    upstream,
                    remote: docker_hub_library(&self.upstreams[upstream].host, rest),
                }),
                None => Err(RouteError::UnknownUpstream(host)),
            };
        }
        let upstream = self.default.ok_or(RouteError::NoDefault)?;
        Ok(Route {
            upstream,
            remote: docker_hub_library(&self.upstreams[upstream].host, name),
        })
    }
}

/// A path segment that names a registry: it has a dot or is `localhost`.
fn looks_like_host(segment: &str) -> bool {
    segment.contains('.') || segment == "localhost"
}

/// A host as the first segment of a repository name: `host:port` becomes `host_port`.
fn host_segment(host: &str) -> String {
    host.replace(':', "_")
}

/// Docker Hub's other names all mean docker.io.
fn normalize_host(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        _ => host,
    }
}

/// Docker Hub's official images live under `library/`.
fn docker_hub_library(host: &str, name: &str) -> String {
    if host == "docker.io" && !name.contains('/') {
        format!("library/{name}")
    } else {
        name.to_owned()
    }
}

fn default_url(host: &str) -> String {
    if host == "docker.io" {
        DOCKER_HUB_API.to_owned()
    } else {
        format!("https://{host}")
    }
}

/// `scheme://authority` of an upstream URL, checked.
fn base_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("upstream URL {url:?} must start with https:// or http://"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(format!(
            "upstream URL {url:?} must be scheme://host[:port], without a path"
        ));
    }
    Ok(url.to_owned())
}

fn host_of(url: &str) -> String {
    url.split_once("://").map_or(url, |(_, h)| h).to_owned()
}

fn duration(key: &str, value: Option<&str>, default_secs: u64) -> Result<Duration, String> {
    match value {
        None => Ok(Duration::from_secs(default_secs)),
        Some(text) => parse_go_duration(text)
            .ok_or_else(|| format!("{key}: {text:?} is not a duration like 5m or 168h")),
    }
}

#[cfg(test)]
mod tests;
