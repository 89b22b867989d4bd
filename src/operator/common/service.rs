//! The Service in front of a workload's pods, and the PersistentVolumeClaim holding its
//! images (none when they live in an object store). The claim has no owner unless
//! `deleteWithRegistry` is set, so deleting the resource keeps its images.

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, Service, ServicePort,
    ServiceSpec as K8sServiceSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Workload;
use crate::operator::crd::{AccessMode, ServiceType};

pub fn service(d: &Workload) -> Service {
    let type_ = match d.service.type_ {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    Service {
        metadata: d.owned(d.name.clone()),
        spec: Some(K8sServiceSpec {
            type_: Some(type_.to_owned()),
            cluster_ip: d.service.cluster_ip.clone(),
            selector: Some(d.selector()),
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

/// The data claim, unless the images live in an object store.
pub fn volume(d: &Workload) -> Option<PersistentVolumeClaim> {
    let storage = d.storage.as_ref()?;
    let mut metadata = d.owned(d.volume_name());
    if !storage.delete_with_registry {
        metadata.owner_references = None;
    }
    let access = match storage.access_mode {
        AccessMode::ReadWriteOnce => "ReadWriteOnce",
        AccessMode::ReadWriteMany => "ReadWriteMany",
    };
    Some(PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![access.to_owned()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_owned(), storage.size.clone())].into()),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    })
}
