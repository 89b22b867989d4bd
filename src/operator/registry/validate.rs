//! Pure validation: the Registry and the Secrets it refers to become a typed [`Desired`]
//! state, or an [`Invalid`] with a reason and a message that says how to fix it. What CEL
//! can check is rejected at admission; this catches what needs other objects.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use crate::operator::common::Workload;
pub use crate::operator::common::validate::{
    Invalid, WorkloadSpec, invalid, secret_value, workload,
};
use crate::operator::crd::{AccessRuleSpec, Registry};
pub use s3::S3Plan;

mod s3;

/// The user the operator manages for pull Secrets.
pub const PULL_USER: &str = "dockyard-pull";

#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Name, owner, image, replicas, Service, TLS, claim (none with S3) and pod options.
    pub workload: Workload,
    pub delete_enabled: bool,
    /// The bucket, when the images live in S3.
    pub s3: Option<S3Plan>,
    pub auth: Option<AuthPlan>,
    pub pull_namespaces: Vec<String>,
    pub pull_secret_name: String,
}

impl Desired {
    /// Where the images are, for the status: `s3://<bucket>/<rootDirectory>`, or
    /// `pvc/<claim>`.
    pub fn storage_location(&self) -> String {
        match &self.s3 {
            Some(s3) => {
                let root = s3.spec.root_directory.as_deref().unwrap_or("");
                let root = root.trim_matches('/');
                format!("s3://{}/{root}", s3.spec.bucket)
            }
            None => format!("pvc/{}", self.workload.volume_name()),
        }
    }
}

/// The `app.kubernetes.io/name` of a Registry's children.
pub const APP: &str = "dockyard-registry";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPlan {
    pub source: UserSource,
    pub anonymous_pull: Vec<String>,
    pub access: Vec<AccessRuleSpec>,
}

/// Where the users come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSource {
    /// Usernames with their passwords, read from Secrets.
    Passwords(Vec<(String, String)>),
    /// A complete htpasswd file from the user's Secret.
    File(String),
}

/// Checks the Registry against the Secrets it refers to (`secrets`, by name).
pub fn validate(
    registry: &Registry,
    secrets: &BTreeMap<String, Secret>,
    default_image: &str,
) -> Result<Desired, Invalid> {
    let spec = &registry.spec;
    let s3 = match &spec.storage.s3 {
        Some(bucket) => Some(s3::plan(bucket, secrets)?),
        None => None,
    };
    let auth = auth_plan(registry, secrets)?;
    let parts = WorkloadSpec {
        app: APP,
        image: spec.image.as_ref(),
        replicas: spec.replicas,
        service: &spec.service,
        tls: &spec.tls,
        storage: spec.storage.filesystem.as_ref(),
        pod: &spec.pod,
        ui: spec.ui.enabled,
    };
    let mut workload = workload(registry, parts, secrets, default_image)?;
    if s3.is_some() {
        workload.storage = None;
    }
    let name = workload.name.clone();
    Ok(Desired {
        workload,
        delete_enabled: spec.storage.delete_enabled,
        s3,
        auth,
        pull_namespaces: {
            let mut ns = spec.pull_secrets.namespaces.clone();
            ns.sort();
            ns.dedup();
            ns
        },
        pull_secret_name: spec
            .pull_secrets
            .secret_name
            .clone()
            .unwrap_or_else(|| format!("{name}-pull")),
    })
}

fn auth_plan(
    registry: &Registry,
    secrets: &BTreeMap<String, Secret>,
) -> Result<Option<AuthPlan>, Invalid> {
    let auth = &registry.spec.auth;
    let source = if let Some(file) = &auth.htpasswd_secret_ref {
        let text = secret_value(secrets, file, "auth.htpasswdSecretRef")?;
        crate::auth::Htpasswd::parse(&text)
            .map_err(|e| invalid("HtpasswdInvalid", format!("auth.htpasswdSecretRef: {e}")))?;
        UserSource::File(text)
    } else if !auth.users.is_empty() {
        let mut users = Vec::new();
        for user in &auth.users {
            if user.username == PULL_USER {
                return Err(invalid(
                    "ReservedUsername",
                    format!("username {PULL_USER:?} is reserved for pull Secrets; pick another"),
                ));
            }
            let password = secret_value(
                secrets,
                &user.password_secret_ref,
                &format!("auth.users[{}]", user.username),
            )?;
            if password.is_empty() {
                return Err(invalid(
                    "EmptyPassword",
                    format!("the password of user {:?} is empty", user.username),
                ));
            }
            users.push((user.username.clone(), password));
        }
        users.sort();
        UserSource::Passwords(users)
    } else {
        return Ok(None);
    };
    let policy = crate::auth::Policy {
        anonymous_pull: auth.anonymous_pull.clone(),
        ..Default::default()
    };
    policy
        .validate()
        .map_err(|m| invalid("PatternInvalid", m))?;
    Ok(Some(AuthPlan {
        source,
        anonymous_pull: auth.anonymous_pull.clone(),
        access: auth.access.clone(),
    }))
}

#[cfg(test)]
pub(crate) mod tests;
