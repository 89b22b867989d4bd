//! Prometheus metrics of the operator: reconciles, failures by kind, and durations.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
    pub error: String,
}

pub struct Metrics {
    pub reconciles: Family<KindLabels, Counter>,
    pub failures: Family<ErrorLabels, Counter>,
    pub duration: Family<KindLabels, Histogram>,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            reconciles: Family::default(),
            failures: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
            }),
        };
        registry.register(
            "dockyard_reconciles",
            "Reconciles run",
            metrics.reconciles.clone(),
        );
        registry.register(
            "dockyard_reconcile_failures",
            "Reconciles that failed, by error kind",
            metrics.failures.clone(),
        );
        registry.register(
            "dockyard_reconcile_duration_seconds",
            "Time one reconcile took",
            metrics.duration.clone(),
        );
        metrics
    }

    pub fn failure(&self, kind: &str, error: &super::error::Error) {
        self.failures
            .get_or_create(&ErrorLabels {
                kind: kind.to_owned(),
                error: error.metric_label().to_owned(),
            })
            .inc();
    }
}
