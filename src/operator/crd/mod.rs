//! Custom resource definitions of group `dockyard.dev`, version `v1alpha1`, derived from
//! Rust types. `dockyard crd` prints them; `crds/` is generated from that output.

mod common;
mod mirror;
mod registry;

use kube::CustomResourceExt;

pub use common::*;
pub use mirror::*;
pub use registry::*;

pub const GROUP: &str = "dockyard.dev";

/// Every CRD this operator serves, as one multi-document YAML stream.
pub fn all_yaml() -> Result<String, serde_yaml::Error> {
    let crds = vec![Registry::crd(), RegistryMirror::crd()];
    let mut out = String::new();
    for crd in &crds {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(crd)?);
    }
    Ok(out)
}
