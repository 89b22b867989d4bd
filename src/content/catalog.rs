//! The catalog: every repository under `repositories/`, found the way distribution finds
//! them (a directory holding `_manifests` is a repository; other `_` directories are skipped).

use super::{Content, Result};
use crate::storage::layout;

impl Content {
    /// All repository names, sorted.
    pub async fn repositories(&self) -> Result<Vec<String>> {
        let root = layout::repositories_root();
        let mut found = Vec::new();
        let mut pending = vec![String::new()];
        while let Some(prefix) = pending.pop() {
            let dir = if prefix.is_empty() {
                root.clone()
            } else {
                format!("{root}/{prefix}")
            };
            for child in self.list_or_empty(&dir).await? {
                if child == "_manifests" {
                    found.push(prefix.clone());
                } else if !child.starts_with('_') {
                    let path = if prefix.is_empty() {
                        child
                    } else {
                        format!("{prefix}/{child}")
                    };
                    if self
                        .driver
                        .stat(&format!("{root}/{path}"))
                        .await
                        .is_ok_and(|i| i.is_dir)
                    {
                        pending.push(path);
                    }
                }
            }
        }
        found.retain(|n| n.parse::<crate::oci::RepoName>().is_ok());
        found.sort();
        Ok(found)
    }
}
