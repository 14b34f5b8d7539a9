//! Operational endpoints, open to the platform (no auth), on every binary:
//! `GET /health/live` (the process answers), `GET /health/ready` (its dependencies answer) and
//! `GET /metrics` (Prometheus text format).

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use coupon_domain::probe::Probe;
use serde::Serialize;

use crate::middleware::Verbatim;
use crate::server::resource;

/// Renders the Prometheus exposition; supplied by the binary that owns the recorder.
pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

/// What the operational endpoints need.
#[derive(Clone)]
pub struct OpsState {
    pub probes: Vec<Arc<dyn Probe>>,
    pub render_metrics: MetricsRenderer,
    /// Bound on each readiness probe; a probe that takes longer counts as down.
    pub probe_timeout: Duration,
}

impl std::fmt::Debug for OpsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.probes.iter().map(|p| p.name()).collect();
        f.debug_struct("OpsState").field("probes", &names).finish()
    }
}

/// Registers the operational routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/health/live").route(web::get().to(live)))
        .service(resource("/health/ready").route(web::get().to(ready)))
        .service(resource("/metrics").route(web::get().to(metrics)));
}

#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    checks: Vec<Check>,
}

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, description = "The process answers")))]
pub(crate) async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "UP", checks: Vec::new() })
}

/// 200 when every dependency answers, else 503 naming the ones that did not. Probes run
/// concurrently so one slow dependency does not hide the state of the others.
#[utoipa::path(get, path = "/health/ready", tag = "operations", responses((status = 200, description = "Every dependency answers"), (status = 503, description = "A dependency is down; the body names it")))]
pub(crate) async fn ready(state: web::Data<OpsState>) -> HttpResponse {
    let timeout = state.probe_timeout;
    let checks = futures::future::join_all(state.probes.iter().map(|probe| async move {
        let outcome = match actix_web::rt::time::timeout(timeout, probe.check()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {timeout:?}")),
        };
        if let Some(error) = &outcome {
            tracing::warn!(dependency = probe.name(), error, "readiness check failed");
        }
        Check { name: probe.name(), status: if outcome.is_none() { "UP" } else { "DOWN" }, error: outcome }
    }))
    .await;
    let up = checks.iter().all(|c| c.error.is_none());
    let body = Health { status: if up { "UP" } else { "DOWN" }, checks };
    if up {
        return HttpResponse::Ok().json(body);
    }
    let mut response = HttpResponse::ServiceUnavailable().json(body);
    response.extensions_mut().insert(Verbatim);
    response
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub(crate) async fn metrics(state: web::Data<OpsState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body((state.render_metrics)())
}
