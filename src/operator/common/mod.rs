//! What every kind's reconciler shares: the workload description ([`Workload`]), where it
//! is reached ([`Addresses`]), its TLS material, the pod template, the Service and claim,
//! the disruption budget, status conditions with their Events, and apply with cleanup of
//! unwanted children. Each kind (`registry/`, `mirror/`) adds its own children and status
//! on top.

pub mod addresses;
pub mod apply;
pub mod budget;
pub mod fetch;
pub mod pod;
pub mod service;
pub mod status;
pub mod tls;
pub mod validate;
mod workload;

pub use addresses::Addresses;
pub use workload::{INSTANCE_LABEL, MANAGED_BY, NAME_LABEL, Workload};
