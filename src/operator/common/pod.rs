//! The workload's Deployment: the operator's image running `dockyard serve`, production
//! shaped (non-root, read-only root filesystem, no capabilities, RuntimeDefault seccomp,
//! probes), `Recreate` while a ReadWriteOnce volume cannot be shared, else rolled one pod at
//! a time and spread over nodes. Every workload mounts its config, a scratch `/tmp`, its TLS
//! Secret and its data claim (unless the images live in an object store); a kind adds its
//! own Secrets and environment ([`Extra`]).

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    HTTPGetAction, KeyToPath, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretVolumeSource,
    SecurityContext, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Workload;
use crate::operator::crd::TlsMode;

/// Port the registry container listens on.
pub const CONTAINER_PORT: i32 = 5000;
/// registry:2's debug listener: `/metrics` for Prometheus (never behind the Service).
pub const METRICS_PORT: i32 = 5001;

/// The config's `http` section every kind's pods share: the API on [`CONTAINER_PORT`], and
/// `/metrics` on [`METRICS_PORT`] (TLS, when on, is added by the caller).
pub fn http_config() -> serde_json::Value {
    serde_json::json!({
        "addr": format!(":{CONTAINER_PORT}"),
        "debug": {
            "addr": format!(":{METRICS_PORT}"),
            "prometheus": { "enabled": true, "path": "/metrics" },
        },
    })
}

/// Where files are mounted in the pod.
pub const CONFIG_DIR: &str = "/etc/dockyard/config";
pub const CONFIG_PATH: &str = "/etc/dockyard/config/config.yml";
pub const TLS_DIR: &str = "/etc/dockyard/tls";
pub const DATA_DIR: &str = "/var/lib/registry";

/// What a kind adds to the pod: Secrets mounted read-only as directories, and environment.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    pub secrets: Vec<SecretMount>,
    /// The config directory is a Secret (it holds credentials), not a ConfigMap.
    pub config_in_secret: bool,
    /// Environment of the registry container (`REGISTRY_*` overrides, from Secrets).
    pub env: Vec<EnvVar>,
}

/// A Secret mounted read-only as a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMount {
    pub volume: String,
    pub secret: String,
    pub dir: String,
    /// Only this key of the Secret, as the file named by the second; every key when `None`.
    pub only: Option<(String, String)>,
}

/// The path the kubelet probes; `dockyard serve` keeps it out of its access log at info.
pub const HEALTH_PATH: &str = crate::registry::HEALTH_PATH;

/// The unprivileged user the registry runs as (and that owns the volume via fsGroup).
const RUN_AS: i64 = 65532;

/// The Deployment of `d`, whose config hashes to `config_hash` (a change rolls the pods).
pub fn deployment(d: &Workload, config_hash: &str, extra: &Extra) -> Deployment {
    let mut annotations = d.pod.pod_annotations.clone();
    annotations.insert(
        "dockyard.dev/config-hash".to_owned(),
        config_hash.to_owned(),
    );
    // The common scrape convention, unless the user says otherwise.
    for (key, value) in [
        ("prometheus.io/scrape", "true".to_owned()),
        ("prometheus.io/port", METRICS_PORT.to_string()),
        ("prometheus.io/path", "/metrics".to_owned()),
    ] {
        annotations.entry(key.to_owned()).or_insert(value);
    }
    // One pod at a time, the new one ready before an old one goes; a ReadWriteOnce volume
    // cannot be shared, so its pod goes first.
    let strategy = if d.shares_storage() {
        DeploymentStrategy {
            type_: Some("RollingUpdate".to_owned()),
            rolling_update: Some(RollingUpdateDeployment {
                max_unavailable: Some(IntOrString::Int(0)),
                max_surge: Some(IntOrString::Int(1)),
            }),
        }
    } else {
        DeploymentStrategy {
            type_: Some("Recreate".to_owned()),
            rolling_update: None,
        }
    };
    Deployment {
        metadata: d.owned(d.name.clone()),
        spec: Some(DeploymentSpec {
            replicas: Some(d.replicas),
            selector: LabelSelector {
                match_labels: Some(d.selector()),
                ..LabelSelector::default()
            },
            strategy: Some(strategy),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(d.labels()),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod(d, extra)),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn pod(d: &Workload, extra: &Extra) -> PodSpec {
    PodSpec {
        containers: vec![container(d, extra)],
        volumes: Some(volumes(d, extra)),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        }),
        // The registry never calls the API server; a ServiceAccount the user names (for a
        // cloud identity webhook) decides for itself.
        service_account_name: d.pod.service_account_name.clone(),
        automount_service_account_token: d.pod.service_account_name.is_none().then_some(false),
        enable_service_links: Some(false),
        node_selector: (!d.pod.node_selector.is_empty()).then(|| d.pod.node_selector.clone()),
        tolerations: (!d.pod.tolerations.is_empty()).then(|| d.pod.tolerations.clone()),
        affinity: d.pod.affinity.clone(),
        topology_spread_constraints: spread(d),
        ..PodSpec::default()
    }
}

/// Replicas that share their storage prefer different nodes (never refusing to schedule),
/// unless the spec places the pods itself with `affinity`. `pod-template-hash` keeps a
/// rollout's new pods spreading among themselves.
fn spread(d: &Workload) -> Option<Vec<TopologySpreadConstraint>> {
    (d.shares_storage() && d.pod.affinity.is_none()).then(|| {
        vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".to_owned(),
            when_unsatisfiable: "ScheduleAnyway".to_owned(),
            label_selector: Some(LabelSelector {
                match_labels: Some(d.selector()),
                ..LabelSelector::default()
            }),
            match_label_keys: Some(vec!["pod-template-hash".to_owned()]),
            ..TopologySpreadConstraint::default()
        }]
    })
}

fn probe(d: &Workload, period: i32) -> Probe {
    let scheme = if matches!(d.tls, TlsMode::Disabled) {
        "HTTP"
    } else {
        "HTTPS"
    };
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(HEALTH_PATH.to_owned()),
            port: IntOrString::String("registry".to_owned()),
            scheme: Some(scheme.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    }
}

fn container(d: &Workload, extra: &Extra) -> Container {
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    };
    // Whole directories, not subPath mounts, so Secret updates reach the pod.
    let mut mounts = vec![mount("config", CONFIG_DIR, true)];
    if d.storage.is_some() {
        mounts.push(mount("data", DATA_DIR, false));
    }
    mounts.push(mount("tmp", "/tmp", false));
    for m in &extra.secrets {
        mounts.push(mount(&m.volume, &m.dir, true));
    }
    if !matches!(d.tls, TlsMode::Disabled) {
        mounts.push(mount("tls", TLS_DIR, true));
    }
    let quantity = |s: &str| Quantity(s.to_owned());
    let resources = d.pod.resources.clone().unwrap_or(ResourceRequirements {
        requests: Some(
            [
                ("cpu".to_owned(), quantity("50m")),
                ("memory".to_owned(), quantity("64Mi")),
            ]
            .into(),
        ),
        limits: Some([("memory".to_owned(), quantity("512Mi"))].into()),
        ..ResourceRequirements::default()
    });
    Container {
        name: "registry".to_owned(),
        image: Some(d.image.clone()),
        args: Some(vec!["serve".to_owned(), CONFIG_PATH.to_owned()]),
        ports: Some(vec![
            ContainerPort {
                name: Some("registry".to_owned()),
                container_port: CONTAINER_PORT,
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("metrics".to_owned()),
                container_port: METRICS_PORT,
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            },
        ]),
        readiness_probe: Some(probe(d, 5)),
        liveness_probe: Some(Probe {
            failure_threshold: Some(6),
            ..probe(d, 10)
        }),
        resources: Some(resources),
        volume_mounts: Some(mounts),
        env: (!extra.env.is_empty()).then(|| extra.env.clone()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

fn volumes(d: &Workload, extra: &Extra) -> Vec<Volume> {
    let secret = |name: &str, secret_name: String, items: Option<Vec<KeyToPath>>| Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret_name),
            default_mode: Some(0o440),
            items,
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mut volumes = vec![if extra.config_in_secret {
        secret("config", d.config_name(), None)
    } else {
        Volume {
            name: "config".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: d.config_name(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        }
    }];
    if d.storage.is_some() {
        volumes.push(Volume {
            name: "data".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: d.volume_name(),
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    volumes.push(Volume {
        name: "tmp".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    });
    for m in &extra.secrets {
        let items = m.only.as_ref().map(|(key, file)| {
            vec![KeyToPath {
                key: key.clone(),
                path: file.clone(),
                mode: None,
            }]
        });
        volumes.push(secret(&m.volume, m.secret.clone(), items));
    }
    match &d.tls {
        TlsMode::Disabled => {}
        TlsMode::Secret(name) => volumes.push(secret("tls", name.clone(), None)),
        TlsMode::SelfSigned(_) | TlsMode::CertManager(_) => {
            volumes.push(secret("tls", d.tls_name(), None))
        }
    }
    volumes
}
