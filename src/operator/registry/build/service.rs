//! The Service in front of the registry pods, and the PersistentVolumeClaim holding the
//! images. The claim has no owner unless `deleteWithRegistry` is set, so deleting a
//! Registry keeps its images.

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, Service, ServicePort,
    ServiceSpec as K8sServiceSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{labels, owned, selector};
use crate::operator::crd::{AccessMode, ServiceType};
use crate::operator::registry::validate::Desired;

pub fn service(d: &Desired) -> Service {
    let type_ = match d.service.type_ {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    Service {
        metadata: owned(d, d.name.clone()),
        spec: Some(K8sServiceSpec {
            type_: Some(type_.to_owned()),
            cluster_ip: d.service.cluster_ip.clone(),
            selector: Some(selector(d)),
            ports: Some(vec![ServicePort {
                name: Some("registry".to_owned()),
                port: d.service.port,
                target_port: Some(IntOrString::String("registry".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..K8sServiceSpec::default()
        }),
        status: None,
    }
}

pub fn volume(d: &Desired) -> PersistentVolumeClaim {
    let mut metadata = owned(d, super::volume_name(d));
    if !d.storage.delete_with_registry {
        metadata.owner_references = None;
    }
    metadata.labels = Some(labels(d));
    let access = match d.storage.access_mode {
        AccessMode::ReadWriteOnce => "ReadWriteOnce",
        AccessMode::ReadWriteMany => "ReadWriteMany",
    };
    PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![access.to_owned()]),
            storage_class_name: d.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_owned(), d.storage.size.clone())].into()),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}
