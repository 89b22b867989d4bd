//! Types shared by the custom resources: references to Secrets, TLS modes, the Service,
//! pod placement knobs and status conditions.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A key in a Secret in the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key within the Secret.
    pub key: String,
}

/// An object in the resource's namespace, by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectRef {
    pub name: String,
}

/// How the registry's serving certificate is obtained. At most one mode may be set; with
/// none, a self-signed CA is generated (`selfSigned`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(has(self.selfSigned) ? 1 : 0) + (has(self.secretRef) ? 1 : 0) + (has(self.certManager) ? 1 : 0) + (has(self.disabled) && self.disabled ? 1 : 0) <= 1"
).message("choose one TLS mode: selfSigned, secretRef, certManager or disabled: true"))]
pub struct TlsSpec {
    /// The operator creates a CA (kept in a Secret) and a serving certificate for the
    /// Service's DNS names and ClusterIP, renewed before it expires. The default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_signed: Option<SelfSignedTls>,
    /// A `kubernetes.io/tls` Secret you manage (`tls.crt`, `tls.key`, optional `ca.crt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectRef>,
    /// A cert-manager `Certificate` issued by this issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_manager: Option<CertManagerTls>,
    /// Serve plain HTTP. Only for registries behind a TLS-terminating proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelfSignedTls {
    /// Days the serving certificate is valid; it is renewed when a third remains.
    #[serde(default = "default_cert_days")]
    #[schemars(range(min = 1, max = 825))]
    pub validity_days: u32,
    /// Delete the CA Secret (`<name>-ca`) when the Registry is deleted. Off by default: the
    /// CA is kept, like the data claim, and a new Registry of the same name reuses it, so
    /// clients and nodes that trust it keep working.
    #[serde(default)]
    pub delete_with_registry: bool,
}

fn default_cert_days() -> u32 {
    90
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertManagerTls {
    pub issuer_ref: IssuerRef,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    pub name: String,
    /// `Issuer` (default) or `ClusterIssuer`.
    #[serde(default = "default_issuer_kind")]
    pub kind: String,
    #[serde(default = "default_issuer_group")]
    pub group: String,
}

fn default_issuer_kind() -> String {
    "Issuer".into()
}

fn default_issuer_group() -> String {
    "cert-manager.io".into()
}

/// The resolved TLS mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsMode {
    SelfSigned(SelfSignedTls),
    Secret(String),
    CertManager(IssuerRef),
    Disabled,
}

impl TlsSpec {
    pub fn mode(&self) -> TlsMode {
        if self.disabled == Some(true) {
            TlsMode::Disabled
        } else if let Some(s) = &self.secret_ref {
            TlsMode::Secret(s.name.clone())
        } else if let Some(c) = &self.cert_manager {
            TlsMode::CertManager(c.issuer_ref.clone())
        } else {
            TlsMode::SelfSigned(self.self_signed.clone().unwrap_or(SelfSignedTls {
                validity_days: default_cert_days(),
                delete_with_registry: false,
            }))
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// The Service in front of the registry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Pin the ClusterIP, e.g. so nodes (which cannot resolve cluster DNS) reach a stable address.
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{1,3}(\\\\.[0-9]{1,3}){3}$') || self.contains(':')").message("clusterIP must be an IPv4 or IPv6 address"))]
    pub cluster_ip: Option<String>,
    /// Other names or addresses nodes and clients reach the registry at, e.g. a node's IP
    /// for a NodePort Service, or a DNS name in front of it. Each one, as `host:port` (the
    /// NodePort for a NodePort Service, else `port`, unless the entry names its own port),
    /// goes into the pull Secrets and, without the port, into the serving certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 261)))]
    #[x_kube(validation = Rule::new("self.all(h, h.matches('^(\\\\[[0-9A-Fa-f:.]+\\\\]|[A-Za-z0-9.:-]+)(:[0-9]{1,5})?$'))").message("service.externalHosts entries are a host name or an IP address with an optional :port, without a scheme or path, e.g. 192.168.1.20 or registry.example.com:443"))]
    pub external_hosts: Vec<String>,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        ServiceSpec {
            type_: ServiceType::ClusterIP,
            port: default_port(),
            cluster_ip: None,
            external_hosts: Vec::new(),
        }
    }
}

fn default_port() -> i32 {
    5000
}

/// The web UI `dockyard serve` shows at `/` on the registry's own address: repositories,
/// tags and search, with sign-in as the registry's users and the same access rules.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UiSpec {
    /// Serve the web UI. On by default; `/v2/` is the same either way.
    #[serde(default = "ui_on")]
    pub enabled: bool,
}

impl Default for UiSpec {
    fn default() -> Self {
        UiSpec { enabled: true }
    }
}

fn ui_on() -> bool {
    true
}

/// Where the pods run and what they may use.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOptions {
    /// The ServiceAccount the pods run as, e.g. one annotated for the cloud's workload
    /// identity (`eks.amazonaws.com/role-arn` for IRSA) so S3 needs no keys. It must exist.
    /// Without it the pods run as the namespace's `default` account and mount no API token;
    /// with it, the account's `automountServiceAccountToken` decides (identity webhooks may
    /// need the token): give it no RBAC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("serviceAccountName is the name of a ServiceAccount in this namespace: lowercase letters, digits, '-' and '.'"))]
    pub service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
}

/// A container runtime whose configuration the node agent writes.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// containerd's `hosts.toml` under its `config_path` (also k3s and rke2).
    Containerd,
    /// CRI-O and podman: a `registries.conf.d` drop-in and `certs.d`.
    Crio,
    /// Docker Engine: `daemon.json` (`registry-mirrors`, `insecure-registries`) and `certs.d`.
    Docker,
}

fn all_runtimes() -> Vec<Runtime> {
    vec![Runtime::Containerd, Runtime::Crio, Runtime::Docker]
}

/// Which nodes the node agent configures, and which of their runtimes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelection {
    /// Nodes whose labels match all of these; every node when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Nodes with a NoSchedule or NoExecute taint are configured only when it is tolerated
    /// here (as a pod would have to be).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Runtimes to configure where present (default: all of them).
    #[serde(default = "all_runtimes")]
    #[schemars(length(min = 1, max = 3))]
    #[x_kube(validation = Rule::new("self.all(r, self.exists_one(s, s == r))").message("nodes.runtimes lists a runtime twice; list each of containerd, crio and docker at most once"))]
    pub runtimes: Vec<Runtime>,
}

impl Default for NodeSelection {
    fn default() -> Self {
        NodeSelection {
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            runtimes: all_runtimes(),
        }
    }
}

/// Status of the node configuration a resource asks for.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodesStatus {
    /// Selected nodes whose agent reports the current configuration in place.
    pub configured: i32,
    /// Nodes the resource selects.
    pub total: i32,
    /// `configured/total`, for `kubectl get`.
    pub summary: String,
    /// Selected nodes that do not carry the current configuration, and why (at most 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<NodeProblem>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeProblem {
    pub node: String,
    pub message: String,
}
