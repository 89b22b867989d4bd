//! What every reconcile gets: the API client, the image registry pods run, metrics and
//! the event reporter.

use std::sync::Arc;

use kube::runtime::events::Reporter;

use super::metrics::Metrics;

/// The field manager for every server-side apply, and the event reporter's name.
pub const MANAGER: &str = "dockyard";

pub struct Context {
    pub client: kube::Client,
    /// Image of the registry workload: the operator's own image unless a resource says otherwise.
    pub image: String,
    pub metrics: Arc<Metrics>,
    pub reporter: Reporter,
}
