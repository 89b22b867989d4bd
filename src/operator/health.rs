//! The operator's HTTP endpoints: `/healthz` (liveness), `/readyz` (readiness by role) and
//! `/metrics` (Prometheus text). Only `operator::run` serves them and changes the role.
//!
//! Readiness follows the instance's role, not only "is the controller running":
//!
//! | role       | `/readyz` | meaning                                                    |
//! |------------|-----------|------------------------------------------------------------|
//! | `Starting` | 503       | no lease state yet, or leading but Registries not listable  |
//! | `Standby`  | 200       | another instance holds the lease; this one waits to take over |
//! | `Leading`  | 200       | this instance runs the controller and can list Registries   |
//! | `Stopping` | 503       | shutting down: draining reconciles, releasing the lease     |
//!
//! A healthy standby is ready on purpose: with two replicas a rolling update only proceeds
//! once the new pod is ready, and the new pod cannot lead before the old one goes, so a
//! standby that reported "not ready" would stall every rollout. The body names the role.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::http::StatusCode;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// What this operator instance is doing right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Starting,
    Standby,
    Leading,
    Stopping,
}

impl Role {
    const ALL: [Role; 4] = [Role::Starting, Role::Standby, Role::Leading, Role::Stopping];

    fn readiness(self) -> (StatusCode, &'static str) {
        match self {
            Role::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
            Role::Standby => (StatusCode::OK, "ok: standby\n"),
            Role::Leading => (StatusCode::OK, "ok: leading\n"),
            Role::Stopping => (StatusCode::SERVICE_UNAVAILABLE, "stopping\n"),
        }
    }
}

/// The shared role of this instance, plus the `dockyard_operator_leader` gauge mirroring it.
pub struct Health {
    role: AtomicU8,
    leader: Gauge,
}

impl Health {
    /// Starts in [`Role::Starting`] and registers `dockyard_operator_leader` in `registry`.
    pub fn new(registry: &mut Registry) -> Health {
        let leader = Gauge::default();
        registry.register(
            "dockyard_operator_leader",
            "1 while this instance holds the lease and runs the controller",
            leader.clone(),
        );
        Health {
            role: AtomicU8::new(Role::Starting as u8),
            leader,
        }
    }

    /// Changes the role; [`Role::Stopping`] is final, later changes are ignored.
    pub fn set(&self, role: Role) {
        let stopping = Role::Stopping as u8;
        let changed = self
            .role
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                (current != stopping && current != role as u8).then_some(role as u8)
            });
        if changed.is_ok() {
            self.leader.set(i64::from(role == Role::Leading));
            tracing::info!(role = ?role, "operator role changed");
        }
    }

    pub fn role(&self) -> Role {
        let value = self.role.load(Ordering::Acquire);
        Role::ALL
            .into_iter()
            .find(|r| *r as u8 == value)
            .unwrap_or(Role::Starting)
    }
}

/// The router for the metrics address: `/healthz`, `/readyz` (by role), `/metrics`.
pub fn router(health: Arc<Health>, metrics: Arc<Registry>) -> axum::Router {
    crate::health::router(Arc::new(move || health.role().readiness()), metrics)
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn get_path(app: &Router, path: &str) -> (StatusCode, String) {
        let request = Request::get(path).body(Body::empty()).expect("request");
        let response = app.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let bytes = response.into_body().collect().await.expect("body");
        (
            status,
            String::from_utf8_lossy(&bytes.to_bytes()).into_owned(),
        )
    }

    fn app() -> (Router, Arc<Health>) {
        let mut registry = Registry::default();
        let health = Arc::new(Health::new(&mut registry));
        (router(health.clone(), Arc::new(registry)), health)
    }

    #[tokio::test]
    async fn readiness_follows_the_role() {
        let (app, health) = app();
        let expected = [
            (Role::Starting, StatusCode::SERVICE_UNAVAILABLE, "starting"),
            (Role::Standby, StatusCode::OK, "ok: standby"),
            (Role::Leading, StatusCode::OK, "ok: leading"),
            (Role::Stopping, StatusCode::SERVICE_UNAVAILABLE, "stopping"),
        ];
        for (role, status, body) in expected {
            health.set(role);
            assert_eq!(health.role(), role);
            assert_eq!(
                get_path(&app, "/readyz").await,
                (status, format!("{body}\n"))
            );
            assert_eq!(
                get_path(&app, "/healthz").await,
                (StatusCode::OK, "ok\n".into())
            );
        }
        // Stopping is final: a controller finishing late cannot make the instance ready again.
        health.set(Role::Leading);
        assert_eq!(health.role(), Role::Stopping);
    }

    #[tokio::test]
    async fn metrics_show_the_leader_gauge_in_openmetrics_text() {
        let (app, health) = app();
        health.set(Role::Leading);
        let (status, body) = get_path(&app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("dockyard_operator_leader 1\n"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
        health.set(Role::Standby);
        let (_, body) = get_path(&app, "/metrics").await;
        assert!(body.contains("dockyard_operator_leader 0\n"), "{body}");
    }
}
