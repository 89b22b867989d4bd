//! The Kubernetes operator: custom resource types (`crd`) and, per resource, a reconciler
//! that runs fetch -> validate -> build -> apply -> status.

pub mod crd;
pub mod pki;
