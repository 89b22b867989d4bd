//! What every reconcile gets: the API client, the image registry pods run, metrics, the
//! one event recorder (so repeated Events aggregate into a series) and the retry delays;
//! and how every kind's reconcile is counted, timed and retried.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::future::Future;
use std::time::Instant;

use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};

use super::Error;
use super::metrics::{KindLabels, Metrics};

/// The field manager for every server-side apply, and the event reporter's name.
pub const MANAGER: &str = "dockyard";

pub struct Context {
    pub client: kube::Client,
    /// Image of the registry workload: the operator's own image unless a resource says otherwise.
    pub image: String,
    pub metrics: Arc<Metrics>,
    /// Shared by every reconcile: the recorder remembers the Events it published, so a
    /// repeated one becomes a series on one Event object instead of a new object each time.
    pub recorder: Recorder,
    pub backoff: Backoff,
    pub verified: super::registry::materials::VerifiedHashes,
    /// Where node plans and the node agents' reports live: the operator's own namespace.
    pub node_namespace: String,
}

impl Context {
    /// A context whose Events are reported as `reporter`, with fresh retry delays.
    pub fn new(
        client: kube::Client,
        image: String,
        metrics: Arc<Metrics>,
        reporter: Reporter,
        node_namespace: String,
    ) -> Context {
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            image,
            metrics,
            backoff: Backoff::default(),
            verified: Default::default(),
            node_namespace,
        }
    }
}

impl Context {
    /// Runs one reconcile of `object` (of `kind`): counted and timed in the metrics; a
    /// success resets its retry delay.
    pub async fn reconciling<K: Resource>(
        &self,
        kind: &str,
        object: &K,
        run: impl Future<Output = Result<Action, Error>>,
    ) -> Result<Action, Error> {
        let labels = KindLabels {
            kind: kind.to_owned(),
        };
        self.metrics.reconciles.get_or_create(&labels).inc();
        let started = Instant::now();
        let result = run.await;
        self.metrics
            .duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        if result.is_ok() {
            self.backoff.succeeded(&object_key(object));
        }
        result
    }

    /// Retries a failed reconcile of `object` after a delay that doubles with each
    /// consecutive failure (and starts over after a success).
    pub fn retry<K: Resource>(&self, kind: &str, object: &K, error: &Error) -> Action {
        self.metrics.failure(kind, error);
        let delay = self.backoff.failed(&object_key(object));
        tracing::warn!(%kind, name = object.meta().name.as_deref().unwrap_or_default(), error = %error, retry_in_secs = delay.as_secs(), "reconcile failed");
        Action::requeue(delay)
    }
}

/// `namespace/name`: the key of an object's retry delay.
pub fn object_key(object: &impl Resource) -> String {
    format!(
        "{}/{}",
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

/// Retry delays per object after failed reconciles: 5 s, doubling to at most 5 min, and
/// back to the start after a success.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

const FIRST_RETRY: Duration = Duration::from_secs(5);
const LONGEST_RETRY: Duration = Duration::from_secs(300);

impl Backoff {
    /// Records a failure of `key` and returns how long to wait before retrying it.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        FIRST_RETRY
            .saturating_mul(1 << (*n - 1).min(10))
            .min(LONGEST_RETRY)
    }

    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_reset() {
        let b = Backoff::default();
        let delays: Vec<u64> = (0..9).map(|_| b.failed("ns/a").as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(b.failed("ns/b").as_secs(), 5, "per object");
        b.succeeded("ns/a");
        assert_eq!(b.failed("ns/a").as_secs(), 5);
    }
}
