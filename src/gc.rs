//! Running garbage collection (`content::gc` does the marking and sweeping): once, for
//! `dockyard garbage-collect`, or every `storage.maintenance.gc.interval` inside
//! `dockyard serve`. Either way under the collector's lock (`content::gclock`), renewed
//! while it runs, so replicas on one bucket take turns and never collect at once.

use std::time::Duration;

use crate::config::gc::GcSchedule;
use crate::content::gclock::{LockState, Locked};
use crate::content::{Content, ContentError, GcOptions, GcReport};

/// How long a lock lasts unless renewed, and how often a running collector renews it.
const LOCK_TTL: Duration = Duration::from_secs(300);
const RENEW_EVERY: Duration = Duration::from_secs(60);

/// What one attempt came to.
#[derive(Debug)]
pub enum Outcome {
    Collected(GcReport),
    /// Another collector holds the lock.
    Busy(LockState),
}

/// A name for this process in the lock: host, pid and a random part.
pub fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}/{}/{}", std::process::id(), &nonce[..8])
}

/// Takes the lock, collects once, releases the lock.
pub async fn collect_once(
    content: &Content,
    options: &GcOptions,
    holder: &str,
) -> Result<Outcome, ContentError> {
    if let Locked::Busy(state) = content.lock_gc(holder, LOCK_TTL).await? {
        return Ok(Outcome::Busy(state));
    }
    let renew = async {
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            if let Err(e) = content.renew_gc_lock(holder, LOCK_TTL).await {
                tracing::warn!(error = %e, "garbage collection: cannot renew the collector's lock");
            }
        }
    };
    let result = tokio::select! {
        result = content.collect_garbage(options) => result,
        () = renew => unreachable!("renewing never ends"),
    };
    if let Err(e) = content.unlock_gc(holder).await {
        tracing::warn!(error = %e, "garbage collection: cannot release the collector's lock; it expires by itself");
    }
    result.map(Outcome::Collected)
}

/// Collects every `schedule.interval` (the first time one interval after start, with up to
/// a tenth of it added at random so replicas started together do not all try at once).
/// `observe` hears each attempt's result (`collected`, `busy`, `failed`) and report.
pub async fn run_scheduled(
    content: Content,
    schedule: GcSchedule,
    observe: impl Fn(&str, Option<&GcReport>) + Send + Sync + 'static,
) {
    let holder = holder();
    let options = GcOptions {
        dry_run: schedule.dry_run,
        delete_untagged: schedule.delete_untagged,
        grace: schedule.grace,
    };
    tracing::info!(
        every = ?schedule.interval,
        grace = ?schedule.grace,
        delete_untagged = schedule.delete_untagged,
        dry_run = schedule.dry_run,
        "online garbage collection scheduled"
    );
    loop {
        let jitter = schedule.interval.mul_f64(rand_fraction() / 10.0);
        tokio::time::sleep(schedule.interval + jitter).await;
        let started = std::time::Instant::now();
        match collect_once(&content, &options, &holder).await {
            Ok(Outcome::Collected(report)) => {
                observe("collected", Some(&report));
                tracing::info!(
                    took = ?started.elapsed(),
                    repositories = report.repositories,
                    blobs_marked = report.blobs_marked,
                    blobs_deleted = report.blobs_deleted.len(),
                    manifests_deleted = report.manifests_deleted.len(),
                    bytes_freed = report.bytes_freed,
                    kept_in_grace = report.blobs_young,
                    dry_run = schedule.dry_run,
                    "garbage collection done"
                );
            }
            Ok(Outcome::Busy(state)) => {
                observe("busy", None);
                tracing::debug!(holder = %state.holder, "garbage collection: another replica is collecting");
            }
            Err(e) => {
                observe("failed", None);
                tracing::warn!(error = %e, "garbage collection failed; will retry at the next interval");
            }
        }
    }
}

/// A number in [0, 1) from a fresh UUID (no RNG dependency for one jitter).
fn rand_fraction() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64;
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The report as `dockyard garbage-collect` prints it, in registry:2's words where it has them.
pub fn render(report: &GcReport, options: &GcOptions) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let (manifest_verb, blob_verb) = if options.dry_run {
        (
            "manifest eligible for deletion",
            "blob eligible for deletion",
        )
    } else {
        ("deleted manifest", "deleted blob")
    };
    for (repo, digest) in &report.manifests_deleted {
        let _ = writeln!(out, "{repo}: {manifest_verb}: {digest}");
    }
    for digest in &report.blobs_deleted {
        let _ = writeln!(out, "{blob_verb}: {digest}");
    }
    let _ = writeln!(
        out,
        "\n{} blobs marked, {} blobs and {} manifests eligible for deletion",
        report.blobs_marked,
        report.blobs_deleted.len(),
        report.manifests_deleted.len()
    );
    let _ = writeln!(
        out,
        "{} bytes {} in {} repositories; {} unreferenced blobs kept, younger than the {:?} grace window",
        report.bytes_freed,
        if options.dry_run {
            "would be freed"
        } else {
            "freed"
        },
        report.repositories,
        report.blobs_young,
        options.grace
    );
    out
}
