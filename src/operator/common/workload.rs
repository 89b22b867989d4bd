//! What every Dockyard workload (a Registry's or a RegistryMirror's registry pods) is made
//! of, whatever kind declared it: its name and owner, the app label, the image, replicas,
//! Service, TLS mode, data claim and pod options. The builders in this module take a
//! [`Workload`]; each reconciler adds what only its kind has.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::operator::crd::{AccessMode, FilesystemStorage, PodOptions, ServiceSpec, TlsMode};

/// The label every child carries; the operator's watches select on it.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "dockyard");
/// The label naming the resource a child belongs to.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// The label naming what kind of workload a child belongs to (`app` of [`Workload`]).
pub const NAME_LABEL: &str = "app.kubernetes.io/name";

#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    /// The controller owner reference every owned child carries.
    pub owner: OwnerReference,
    /// `app.kubernetes.io/name` of the children: `dockyard-registry`, `dockyard-mirror`.
    pub app: &'static str,
    pub image: String,
    pub replicas: i32,
    pub service: ServiceSpec,
    pub tls: TlsMode,
    /// The data claim; `None` when the images live in an object store.
    pub storage: Option<FilesystemStorage>,
    pub pod: PodOptions,
    /// Whether the pods serve the web UI (`ui.enabled`).
    pub ui: bool,
}

impl Workload {
    /// Labels on every child; the pod selector uses the first two.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (NAME_LABEL.to_owned(), self.app.to_owned()),
            (INSTANCE_LABEL.to_owned(), self.name.clone()),
            (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        ])
    }

    /// The pods' selector (the Deployment's and the Service's).
    pub fn selector(&self) -> BTreeMap<String, String> {
        self.labels()
            .into_iter()
            .filter(|(k, _)| k != MANAGED_BY.0)
            .collect()
    }

    /// A label selector for every child of this workload, as a string.
    pub fn children_selector(&self) -> String {
        format!(
            "{NAME_LABEL}={},{INSTANCE_LABEL}={},{}={}",
            self.app, self.name, MANAGED_BY.0, MANAGED_BY.1
        )
    }

    /// Metadata of a child in the resource's namespace, owned by it.
    pub fn owned(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// `<name>-<suffix>`: the name of a child.
    pub fn child(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }

    pub fn config_name(&self) -> String {
        self.child("config")
    }
    pub fn ca_name(&self) -> String {
        self.child("ca")
    }
    pub fn tls_name(&self) -> String {
        self.child("tls")
    }
    pub fn volume_name(&self) -> String {
        self.child("data")
    }

    /// Whether every replica can use the storage at once (an object store or a
    /// ReadWriteMany claim): the pods then roll one by one and spread over nodes.
    pub fn shares_storage(&self) -> bool {
        self.storage
            .as_ref()
            .is_none_or(|s| s.access_mode == AccessMode::ReadWriteMany)
    }

    /// The Secret whose `ca.crt` signs the serving certificate, when there is one.
    pub fn ca_secret(&self) -> Option<String> {
        match &self.tls {
            TlsMode::SelfSigned(_) => Some(self.ca_name()),
            TlsMode::CertManager(_) => Some(self.tls_name()),
            TlsMode::Secret(secret) => Some(secret.clone()),
            TlsMode::Disabled => None,
        }
    }
}
