//! The operator's error type. Each variant has a metric label, so failures are counted
//! by kind.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    #[error("resource has no namespace")]
    NoNamespace,
    #[error("certificate error: {0}")]
    Pki(#[from] super::pki::PkiError),
    #[error("cannot serialize {what}: {reason}")]
    Serialize { what: &'static str, reason: String },
    #[error("finalizer error: {0}")]
    Finalizer(String),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::NoNamespace => "no_namespace",
            Error::Pki(_) => "pki",
            Error::Serialize { .. } => "serialize",
            Error::Finalizer(_) => "finalizer",
        }
    }
}
