//! The `Registry` resource: a private registry with users, TLS, storage, a Service and
//! pull Secrets. Admission (CEL) rejects what can be known invalid, with how to fix it.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    LocalObjectRef, NodeSelection, NodesStatus, PodOptions, SecretKeyRef, ServiceSpec, TlsSpec,
    UiSpec,
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
    printcolumn(name = "Storage", type_ = "string", json_path = ".status.storage"),
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
    #[serde(default)]
    pub ui: UiSpec,
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

/// An S3-compatible bucket every replica shares (AWS S3, MinIO, Ceph RGW): images, upload
/// sessions and metadata all live in the bucket, so any replica serves any request and
/// `replicas` can grow past one. No volume is made.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.caSecretRef) && self.insecureSkipVerify)").message("set either storage.s3.caSecretRef (verify the endpoint with this CA) or insecureSkipVerify: true (do not verify), not both"))]
#[x_kube(validation = Rule::new("!has(self.endpoint) || !self.endpoint.startsWith('http://') || (!has(self.caSecretRef) && !self.insecureSkipVerify)").message("storage.s3.caSecretRef and insecureSkipVerify are for an https:// endpoint; this endpoint is plain http://"))]
pub struct S3Storage {
    /// The bucket's name alone; it must exist. Put a key prefix in `rootDirectory`.
    #[schemars(length(max = 255))]
    #[x_kube(validation = Rule::new("self != ''").message("storage.s3.bucket must name a bucket"))]
    #[x_kube(validation = Rule::new("self == '' || self.matches('^[A-Za-z0-9][A-Za-z0-9._-]*$')").message("storage.s3.bucket is the bucket's name alone, like registry-images: without s3://, a host or a path (put a key prefix in rootDirectory)"))]
    pub bucket: String,
    /// The bucket's region, like `eu-west-1`. Without it: `AWS_REGION` in the pod's
    /// environment (workload identity webhooks set it), else `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9_-]+$')").message("storage.s3.region is a region name like eu-west-1 or us-east-1"))]
    pub region: Option<String>,
    /// The S3 API's base URL for a store other than AWS (MinIO, Ceph RGW), like
    /// `http://minio.storage.svc:9000` or `https://s3.example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/?#@\\\\s]+/?$')").message("storage.s3.endpoint is the S3 API's base URL, like http://minio.storage.svc:9000 or https://s3.example.com: http:// or https://, a host and an optional port, no path, query or credentials"))]
    pub endpoint: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted ones
    /// (`bucket.endpoint/key`). Default: path style with an `endpoint` (what MinIO and Ceph
    /// need), virtual-hosted on AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_path_style: Option<bool>,
    /// A key prefix inside the bucket, like `registry` or `teams/a/registry`, so several
    /// registries (or other data) can share one bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.matches('^/?[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/?$') && !self.split('/').exists(s, s == '..' || s == '.')").message("storage.s3.rootDirectory is a key prefix like registry or teams/a/registry: path segments of letters, digits, '.', '_' and '-', without . or .. segments"))]
    pub root_directory: Option<String>,
    /// A Secret with the keys `accessKey` and `secretKey` (`accessKeyID` and
    /// `secretAccessKey` are read too). Passed to the pods as environment variables from the
    /// Secret, never written into the config. Without it the pods use the default AWS chain:
    /// `AWS_*` variables, web identity (IRSA: set `serviceAccountName` to a ServiceAccount
    /// annotated with `eks.amazonaws.com/role-arn`), the container endpoint, the instance role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalObjectRef>,
    /// A CA (PEM) that signs the endpoint's certificate, e.g. a self-signed MinIO's; trusted
    /// besides the system's CAs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// Do not verify the endpoint's certificate. Only for a lab store; prefer `caSecretRef`.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// The multipart part size, like `16Mi` (default `10Mi`): from `5Mi` (S3's smallest part)
    /// to `5Gi`. Blobs up to 10,000 parts long can be pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+(Ki|Mi|Gi|k|M|G)?$') && quantity(self).compareTo(quantity('5Mi')) >= 0 && quantity(self).compareTo(quantity('5Gi')) <= 0").message("storage.s3.chunkSize is a size from 5Mi (S3's smallest part) to 5Gi, like 16Mi: a whole number with an optional k, M, G, Ki, Mi or Gi suffix"))]
    pub chunk_size: Option<String>,
    /// Server-side encryption of what the registry writes (default: the bucket's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<S3Encryption>,
    /// The storage class of new objects, like `STANDARD`, `STANDARD_IA` or
    /// `INTELLIGENT_TIERING` (default: the bucket's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Z][A-Z0-9_]*$')").message("storage.s3.storageClass is an S3 storage class like STANDARD, STANDARD_IA or INTELLIGENT_TIERING (uppercase)"))]
    pub storage_class: Option<String>,
    /// Answer blob downloads with a redirect to a presigned URL of the object, so the bytes
    /// flow from the store instead of through the registry pods. Off by default: every
    /// client (and every node's container runtime) must then reach `endpoint` itself, by
    /// the same name the pods use - a cluster-internal address like `minio.storage.svc`
    /// does not resolve on nodes.
    #[serde(default)]
    pub redirect: bool,
    /// Online garbage collection of blobs no manifest references; on by default.
    #[serde(default)]
    pub gc: GarbageCollection,
}

/// Server-side encryption of the objects the registry writes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type != 'KMS' || has(self.keyId)").message("storage.s3.encryption type KMS needs keyId, the KMS key's ID, ARN or alias (for keys S3 manages, use type: AES256)"))]
#[x_kube(validation = Rule::new("self.type == 'KMS' || !has(self.keyId)").message("storage.s3.encryption.keyId is used only with type: KMS"))]
pub struct S3Encryption {
    #[serde(rename = "type")]
    pub type_: EncryptionType,
    /// With `KMS`: the key's ID, ARN or alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub key_id: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum EncryptionType {
    /// The bucket's default encryption.
    None,
    /// SSE-S3: keys S3 manages.
    #[serde(rename = "AES256")]
    Aes256,
    /// SSE-KMS with `keyId`.
    #[serde(rename = "KMS")]
    Kms,
}

/// Scheduled online garbage collection: blobs no manifest references (and, if asked,
/// manifests no tag references) are deleted while the registry keeps serving. Replicas take
/// turns through a lock in the bucket, so one collects at a time.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GarbageCollection {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How often to collect, as a Go duration (default `24h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) >= duration('1m')").message("storage.s3.gc.interval is a Go duration of at least 1m, like 24h or 6h"))]
    pub interval: Option<String>,
    /// Blobs younger than this are never collected, as a Go duration (default `1h`): a push
    /// uploads its layers before the manifest that references them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) >= duration('10m')").message("storage.s3.gc.grace is a Go duration of at least 10m, like 1h: blobs pushed less than grace ago are never collected, and a slow push uploads its layers long before its manifest"))]
    pub grace: Option<String>,
    /// Also delete manifests no tag points at (and then their blobs). Images pulled only
    /// by digest must keep a tag.
    #[serde(default)]
    pub delete_untagged: bool,
    /// Log what would be deleted, delete nothing.
    #[serde(default)]
    pub dry_run: bool,
}

impl Default for GarbageCollection {
    fn default() -> Self {
        GarbageCollection {
            enabled: true,
            interval: None,
            grace: None,
            delete_untagged: false,
            dry_run: false,
        }
    }
}

fn yes() -> bool {
    true
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
    /// Where the images are: `s3://<bucket>/<rootDirectory>`, or `pvc/<claim>` for a volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// With `nodeTrust`: how many selected nodes trust the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodesStatus>,
}
