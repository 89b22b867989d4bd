//! The `RegistryMirror` resource: a pull-through cache of upstream registries (docker.io,
//! ghcr.io, quay.io, private ones) served by Dockyard, that every selected node's
//! containerd, CRI-O and Docker pull through, falling back to the upstream when it is down.
//! Admission (CEL) rejects duplicate hosts, bad URLs and conflicting settings with how to
//! fix them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    LocalObjectRef, NodeSelection, NodesStatus, PodOptions, SecretKeyRef, ServiceSpec, TlsSpec,
    UiSpec,
};
use super::registry::FilesystemStorage;

/// A pull-through cache of upstream registries that nodes pull through.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "dockyard.dev",
    version = "v1alpha1",
    kind = "RegistryMirror",
    namespaced,
    shortname = "mirror",
    status = "RegistryMirrorStatus",
    doc = "A pull-through cache of upstream registries that every selected node's container runtime pulls through.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Upstreams", type_ = "string", json_path = ".status.upstreams"),
    printcolumn(name = "Nodes", type_ = "string", json_path = ".status.nodes.summary"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(
        "self.spec.replicas <= 1 || (has(self.spec.cache.storage) && self.spec.cache.storage.accessMode == 'ReadWriteMany')"
    ).message("replicas > 1 needs a cache every replica can share: set spec.cache.storage.accessMode: ReadWriteMany"),
)]
#[serde(rename_all = "camelCase")]
pub struct RegistryMirrorSpec {
    /// The registries mirrored; nodes pull images of these hosts through the mirror. Keyed
    /// by host: the API server refuses a host listed twice (`Duplicate value`), and
    /// server-side apply merges entries by host.
    #[schemars(length(min = 1, max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["host"]))]
    pub upstreams: Vec<Upstream>,
    #[serde(default)]
    pub cache: CacheSpec,
    /// Mirror pods. More than one needs a ReadWriteMany cache volume.
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 50))]
    pub replicas: i32,
    #[serde(default)]
    pub tls: TlsSpec,
    /// The Service nodes reach the mirror at. Pin `clusterIP` to keep node configuration
    /// stable if the mirror is ever re-created.
    #[serde(default)]
    pub service: ServiceSpec,
    /// Which nodes pull through the mirror.
    #[serde(default)]
    pub nodes: MirrorNodes,
    /// Mirror image; defaults to the operator's own image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The web UI (on a mirror it also shows what is cached per upstream and the hit ratio).
    #[serde(default)]
    pub ui: UiSpec,
    #[serde(default, flatten)]
    pub pod: PodOptions,
}

fn one() -> i32 {
    1
}

fn yes() -> bool {
    true
}

/// One upstream registry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.url) || !self.url.startsWith('http://') || self.insecure").message("a plain-HTTP upstream url needs insecure: true (or use https://)"))]
#[x_kube(validation = Rule::new("!(has(self.caSecretRef) && self.insecure)").message("set either caSecretRef (verify the upstream with this CA) or insecure: true (do not verify), not both"))]
pub struct Upstream {
    /// The registry host as image names spell it: `docker.io`, `ghcr.io`,
    /// `registry.example.com:5000`.
    #[schemars(length(min = 1, max = 261))]
    #[x_kube(validation = Rule::new("self.matches('^([a-z0-9]([a-z0-9-]*[a-z0-9])?)(\\\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?$') || self.matches('^\\\\[[0-9A-Fa-f:.]+\\\\](:[0-9]{1,5})?$')").message("upstreams[].host is a registry host as image names spell it, like docker.io, ghcr.io or registry.example.com:5000: lowercase, no scheme, path or spaces"))]
    pub host: String,
    /// Where the upstream's API is, when not `https://<host>` (`https://registry-1.docker.io`
    /// for docker.io).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/?#@\\\\s]+/?$')").message("upstreams[].url is the upstream's base URL, like https://registry-1.docker.io: http:// or https://, a host and an optional port, no path, query or credentials"))]
    pub url: Option<String>,
    /// Credentials for the upstream: a `kubernetes.io/dockerconfigjson` Secret (its entry
    /// for this host), or a Secret with `username` and `password`. Clients' own credentials
    /// are never sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalObjectRef>,
    /// A CA (PEM) to trust for the upstream, besides the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// Plain HTTP, or HTTPS without verifying the certificate. Only for lab upstreams.
    #[serde(default)]
    pub insecure: bool,
}

/// The cache's storage and limits.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheSpec {
    /// The volume holding cached content (default: a 10Gi ReadWriteOnce claim). It is kept
    /// when the mirror is deleted unless `deleteWithRegistry` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<FilesystemStorage>,
    /// Content unused for this long is removed, as a Go duration (`168h`, the default;
    /// `0` keeps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$|^0$')").message("cache.ttl is a Go duration like 168h, 30m or 1h30m (0 keeps content forever)"))]
    pub ttl: Option<String>,
    /// The cache's largest size, like `50Gi` or `500M`; past it the least recently used
    /// content is evicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+(\\\\.[0-9]+)?([KMGTP]i?|[kKMGTP]i?B)?$')").message("cache.maxSize is a size like 50Gi, 500M or a number of bytes"))]
    pub max_size: Option<String>,
    /// How long a tag is trusted before it is checked upstream again, as a Go duration
    /// (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$|^0$')").message("cache.freshness is a Go duration like 5m or 1h"))]
    pub freshness: Option<String>,
}

/// The nodes that pull through the mirror.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MirrorNodes {
    #[serde(default, flatten)]
    pub selection: NodeSelection,
    /// Runtimes fall back to the upstream when the mirror is unreachable (containerd keeps
    /// the upstream as `server`; CRI-O tries the location after its mirrors). On by default.
    #[serde(default = "yes")]
    pub fallback: bool,
    /// Configure nodes at all; `false` runs the mirror for clients that name it directly.
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for MirrorNodes {
    fn default() -> Self {
        MirrorNodes {
            selection: NodeSelection::default(),
            fallback: true,
            enabled: true,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryMirrorStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where nodes reach the mirror: the Service's ClusterIP and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Secret holding the CA that signs the serving certificate (`ca.crt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<String>,
    /// The mirrored hosts, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstreams: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodesStatus>,
}
