//! The referrers API: manifests whose `subject` is a given digest, as descriptors,
//! optionally filtered by artifact type.

use super::{Content, Result};
use crate::oci::manifest::{self, Descriptor};
use crate::oci::{Algorithm, Digest, RepoName};
use crate::storage::layout;

impl Content {
    /// Descriptors of the manifests in `name` that refer to `subject`, sorted by digest.
    pub async fn referrers(
        &self,
        name: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let dir = layout::referrers_dir(name, subject);
        let mut out = Vec::new();
        for alg in self.list_or_empty(&dir).await? {
            let Ok(algorithm) = alg.parse::<Algorithm>() else {
                continue;
            };
            for hex in self.list_or_empty(&format!("{dir}/{alg}")).await? {
                let Ok(digest) = Digest::from_parts(algorithm, &hex) else {
                    continue;
                };
                let m = match self
                    .get_manifest(name, &crate::oci::Reference::Digest(digest))
                    .await
                {
                    Ok(m) => m,
                    Err(super::ContentError::ManifestUnknown(_)) => continue,
                    Err(e) => return Err(e),
                };
                let Ok(parsed) = manifest::parse(&m.bytes, Some(&m.media_type)) else {
                    continue;
                };
                if artifact_type.is_some_and(|want| parsed.artifact_type.as_deref() != Some(want)) {
                    continue;
                }
                out.push(Descriptor {
                    media_type: parsed.media_type,
                    digest: m.digest,
                    size: m.bytes.len() as u64,
                    artifact_type: parsed.artifact_type,
                    annotations: parsed.annotations,
                });
            }
        }
        Ok(out)
    }
}
