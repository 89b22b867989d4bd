//! `catalog` (a Dockyard extension): how current the repository name index behind
//! `/v2/_catalog`, the web UI's search and `docker search` stays with what other processes
//! write to the same storage. This process's own pushes and deletes show at once.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, parse_go_duration};

/// Other replicas' new and deleted repositories show within this (one listing of the name
/// markers).
const DEFAULT_REFRESH: Duration = Duration::from_secs(10);
/// Repositories written by something other than Dockyard show within this (a walk of the
/// whole tree: cheap on a disk, one listing per repository on an object store).
const DEFAULT_RESCAN_FILESYSTEM: Duration = Duration::from_secs(300);
const DEFAULT_RESCAN_OBJECT_STORE: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CatalogConfig {
    pub refresh: Option<String>,
    pub rescan: Option<String>,
}

/// The index's upkeep, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogSchedule {
    pub refresh: Duration,
    pub rescan: Duration,
}

impl CatalogConfig {
    /// The schedule; `object_store` picks the rescan default.
    pub fn resolve(&self, object_store: bool) -> Result<CatalogSchedule, ConfigError> {
        let rescan_default = if object_store {
            DEFAULT_RESCAN_OBJECT_STORE
        } else {
            DEFAULT_RESCAN_FILESYSTEM
        };
        let refresh = duration("refresh", &self.refresh, DEFAULT_REFRESH)?;
        let rescan = duration("rescan", &self.rescan, rescan_default)?;
        if rescan < refresh {
            return Err(ConfigError::Invalid(format!(
                "catalog.rescan ({}s) must be at least catalog.refresh ({}s)",
                rescan.as_secs(),
                refresh.as_secs()
            )));
        }
        Ok(CatalogSchedule { refresh, rescan })
    }
}

fn duration(key: &str, text: &Option<String>, default: Duration) -> Result<Duration, ConfigError> {
    let Some(text) = text else {
        return Ok(default);
    };
    match parse_go_duration(text) {
        Some(d) if d >= Duration::from_secs(1) => Ok(d),
        _ => Err(ConfigError::Invalid(format!(
            "catalog.{key}: {text:?} is not a duration of at least 1s, like 10s or 5m"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_depend_on_the_storage() {
        let c = CatalogConfig::default();
        assert_eq!(
            c.resolve(false).unwrap(),
            CatalogSchedule {
                refresh: Duration::from_secs(10),
                rescan: Duration::from_secs(300)
            }
        );
        assert_eq!(c.resolve(true).unwrap().rescan, Duration::from_secs(3600));
    }

    #[test]
    fn refuses_bad_durations() {
        let bad = |refresh: &str, rescan: &str| {
            CatalogConfig {
                refresh: Some(refresh.into()),
                rescan: Some(rescan.into()),
            }
            .resolve(false)
            .unwrap_err()
            .to_string()
        };
        assert!(bad("soon", "1h").contains("catalog.refresh: \"soon\""));
        assert!(bad("0s", "1h").contains("at least 1s"));
        assert!(bad("1m", "30s").contains("must be at least catalog.refresh"));
        let ok = CatalogConfig {
            refresh: Some("2s".into()),
            rescan: Some("1m".into()),
        };
        assert_eq!(ok.resolve(true).unwrap().refresh, Duration::from_secs(2));
    }
}
