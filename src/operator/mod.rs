//! The Kubernetes operator: custom resource types (`crd`) and, per resource, a reconciler
//! that runs fetch -> validate -> build -> apply -> status.

pub mod common;
mod context;
pub mod crd;
mod error;
mod health;
pub mod metrics;
pub mod mirror;
pub mod nodeplan;
pub mod nodes;
pub mod pki;
pub mod registry;
pub mod run;

pub use context::{Backoff, Context, MANAGER};
pub use error::Error;
