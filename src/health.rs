//! The HTTP endpoints every long-running role but `serve` exposes on its metrics address:
//! `/healthz` (alive while the process answers), `/readyz` (what the role says) and
//! `/metrics` (Prometheus text). The operator and the node agent share them.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;

/// The role's readiness: a status and a one-line body.
pub type Readiness = Arc<dyn Fn() -> (StatusCode, &'static str) + Send + Sync>;

#[derive(Clone)]
struct Endpoints {
    readiness: Readiness,
    metrics: Arc<Registry>,
}

/// The router for the metrics address: `/healthz`, `/readyz`, `/metrics`.
pub fn router(readiness: Readiness, metrics: Arc<Registry>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Endpoints { readiness, metrics })
}

/// Alive while the process answers: every failure a role cannot retry ends the process.
async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(endpoints): State<Endpoints>) -> Response {
    (endpoints.readiness)().into_response()
}

async fn metrics_text(State(endpoints): State<Endpoints>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &endpoints.metrics) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
