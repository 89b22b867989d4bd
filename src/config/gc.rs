//! `storage.maintenance.gc` (a Dockyard extension): online garbage collection inside
//! `dockyard serve`, every `interval`, by whichever replica takes the collector's lock.
//! `dockyard garbage-collect` reads `grace` and `deleteuntagged` from here too.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, lenient, parse_go_duration};

/// The grace window when none is configured.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GcConfig {
    #[serde(default, deserialize_with = "lenient::bool")]
    pub enabled: bool,
    pub interval: Option<String>,
    pub grace: Option<String>,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub deleteuntagged: bool,
    #[serde(default, deserialize_with = "lenient::bool")]
    pub dryrun: bool,
}

/// Scheduled collection, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcSchedule {
    pub interval: Duration,
    pub grace: Duration,
    pub delete_untagged: bool,
    pub dry_run: bool,
}

impl GcConfig {
    fn duration(
        key: &str,
        text: &Option<String>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match text {
            None => Ok(default),
            Some(text) => parse_go_duration(text).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "storage.maintenance.gc.{key}: {text:?} is not a duration like 1h or 30m"
                ))
            }),
        }
    }

    /// The grace window: blobs written or relied on more recently are never collected.
    pub fn grace(&self) -> Result<Duration, ConfigError> {
        Self::duration("grace", &self.grace, DEFAULT_GRACE)
    }

    /// The schedule, if collection is enabled.
    pub fn resolve(&self) -> Result<Option<GcSchedule>, ConfigError> {
        let grace = self.grace()?;
        let interval = Self::duration("interval", &self.interval, DEFAULT_INTERVAL)?;
        if interval.is_zero() {
            return Err(ConfigError::Invalid(
                "storage.maintenance.gc.interval must be longer than 0s".into(),
            ));
        }
        Ok(self.enabled.then_some(GcSchedule {
            interval,
            grace,
            delete_untagged: self.deleteuntagged,
            dry_run: self.dryrun,
        }))
    }
}

/// How old a blob may be before a manifest push relying on it records the use: half the
/// grace window, at most 5 minutes (see `content::gc`).
pub fn protect_after(grace: Duration) -> Duration {
    (grace / 2).min(Duration::from_secs(300))
}
