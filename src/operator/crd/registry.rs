//! The `Registry` resource: a private registry with users, TLS, storage, a Service and
//! pull Secrets. Admission (CEL) rejects what can be known invalid, with how to fix it.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    LocalObjectRef, NodeSelection, NodesStatus, PodOptions, SecretKeyRef, ServiceSpec, TlsSpec,
};

/// A private container registry served by Dockyard.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "dockyard.dev",
    version = "v1alpha1",
    kind = "Registry",
    namespaced,
    shortname = "reg",
    status = "RegistryStatus",
    doc = "A private container registry: users, TLS, storage, a Service and pull Secrets.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(
        "self.spec.replicas <= 1 || has(self.spec.storage.s3) || (has(self.spec.storage.filesystem) && self.spec.storage.filesystem.accessMode == 'ReadWriteMany')"
    ).message("replicas > 1 needs storage every replica can share: set spec.storage.s3, or spec.storage.filesystem.accessMode: ReadWriteMany"),
)]
#[serde(rename_all = "camelCase")]
pub struct RegistrySpec {
    /// Registry pods. More than one needs shared storage (s3 or a ReadWriteMany volume).
    #[serde(default = "one")]
    #[schemars(range(min = 0, max = 50))]
    pub replicas: i32,
    #[serde(default)]
    pub storage: StorageSpec,
    #[serde(default)]
    pub auth: AuthSpec,
    #[serde(default)]
    pub tls: TlsSpec,
    #[serde(default)]
    pub service: ServiceSpec,
    #[serde(default)]
    pub pull_secrets: PullSecretsSpec,
    /// Make the selected nodes' container runtimes trust this registry's CA, so pods can run
    /// images named `<status.endpoint>/team/app:1` (its ClusterIP, which kube-proxy makes
    /// reachable from every node). Needs the chart's node agent.
    #[serde(default)]
    pub node_trust: bool,
    /// Which nodes (and runtimes) `nodeTrust` configures; every node by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeSelection>,
    /// Registry image; defaults to the operator's own image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, flatten)]
    pub pod: PodOptions,
}

fn one() -> i32 {
    1
}

/// Where images are stored. Without either, a 10Gi ReadWriteOnce volume.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.filesystem) && has(self.s3))").message("set only one of storage.filesystem and storage.s3"))]
pub struct StorageSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<FilesystemStorage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Storage>,
    /// Allow deleting manifests, tags and blobs through the API.
    #[serde(default)]
    pub delete_enabled: bool,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AccessMode {
    #[default]
    ReadWriteOnce,
    ReadWriteMany,
}

/// A PersistentVolumeClaim for the images.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilesystemStorage {
    /// The claim's size request. `null` is not kept: it becomes the default (10Gi), which the
    /// operator can read, where a stored `null` would not be.
    #[serde(default = "default_size")]
    #[schemars(extend("nullable" = false))]
    pub size: Quantity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    #[serde(default)]
    pub access_mode: AccessMode,
    /// Delete the volume (and every image on it) when the Registry is deleted. Off by
    /// default: the claim is kept and a new Registry of the same name picks it up again.
    #[serde(default)]
    pub delete_with_registry: bool,
}

impl Default for FilesystemStorage {
    fn default() -> Self {
        FilesystemStorage {
            size: default_size(),
            storage_class_name: None,
            access_mode: AccessMode::ReadWriteOnce,
            delete_with_registry: false,
        }
    }
}

fn default_size() -> Quantity {
    Quantity("10Gi".into())
}

/// An S3-compatible bucket shared by every replica.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Storage {
    #[x_kube(validation = Rule::new("self != ''").message("storage.s3.bucket must name a bucket"))]
    pub bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Endpoint URL for non-AWS stores (MinIO, Ceph RGW).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub force_path_style: bool,
    /// Secret with `accessKeyID` and `secretAccessKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalObjectRef>,
}

/// Who may use the registry. Without `users` or `htpasswdSecretRef` the registry is open.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.users) && size(self.users) > 0 && has(self.htpasswdSecretRef))").message("set either auth.users or auth.htpasswdSecretRef, not both"))]
pub struct AuthSpec {
    /// Users whose passwords live in Secrets; the operator bcrypts them into an htpasswd Secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new("self.all(u, self.exists_one(v, v.username == u.username))").message("auth.users has a duplicate username"))]
    pub users: Vec<UserSpec>,
    /// Bring your own htpasswd file (bcrypt entries) in a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub htpasswd_secret_ref: Option<SecretKeyRef>,
    /// Repository patterns callers without credentials may pull (`**` for all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub anonymous_pull: Vec<String>,
    /// Who may pull, push and delete what; without rules every user may do everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub access: Vec<AccessRuleSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserSpec {
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[^:\\\\s]+$')").message("usernames may not be empty or contain ':' or spaces"))]
    pub username: String,
    pub password_secret_ref: SecretKeyRef,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pull,
    Push,
    Delete,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessRuleSpec {
    /// User names; `*` is any authenticated user.
    pub users: Vec<String>,
    /// Repository patterns: `*` within a path segment, `**` across segments.
    pub repositories: Vec<String>,
    pub actions: Vec<Action>,
}

/// Namespaces that get a ready `kubernetes.io/dockerconfigjson` Secret for pulling.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PullSecretsSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Name of the Secret created in each namespace (default: `<registry>-pull`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where nodes and clients reach the registry: the Service's ClusterIP and port, e.g.
    /// `10.96.0.12:5000` (nodes resolve names with the host's resolver, not cluster DNS, so
    /// `<name>.<namespace>.svc` works only inside pods). The pull Secrets hold both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Secret holding the CA that signs the serving certificate (`ca.crt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<String>,
    /// With `nodeTrust`: how many selected nodes trust the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodesStatus>,
}
