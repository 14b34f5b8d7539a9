//! Operational endpoints, open to the platform (no auth), on every binary:
//! `GET /health/live` (the process answers), `GET /health/ready` (its dependencies answer) and
//! `GET /metrics` (Prometheus text format).

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use coupon_domain::probe::{Probe, ProbeError};
use serde::Serialize;

use crate::envelope::Verbatim;
use crate::routing::resource;

/// Renders the Prometheus exposition; supplied by the binary that owns the recorder.
pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

/// A dependency of the process, and whether the process can serve without it.
#[derive(Clone)]
pub struct Dependency {
    pub probe: Arc<dyn Probe>,
    /// Down, it makes the process unready (503). An optional one that is down is reported as
    /// `DEGRADED` while the process stays ready: the api-server issues without Redis, under
    /// PostgreSQL's constraints alone, and a Kubernetes Service must not drop every pod for it.
    pub required: bool,
}

impl std::fmt::Debug for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dependency")
            .field("name", &self.probe.name())
            .field("required", &self.required)
            .finish()
    }
}

impl Dependency {
    pub fn required(probe: Arc<dyn Probe>) -> Self {
        Self { probe, required: true }
    }

    pub fn optional(probe: Arc<dyn Probe>) -> Self {
        Self { probe, required: false }
    }
}

/// What the operational endpoints need.
#[derive(Clone)]
pub struct OpsState {
    pub dependencies: Vec<Dependency>,
    pub render_metrics: MetricsRenderer,
    /// Bound on each readiness probe; a probe that takes longer counts as down.
    pub probe_timeout: Duration,
}

impl std::fmt::Debug for OpsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpsState").field("dependencies", &self.dependencies).finish()
    }
}

/// Registers the operational routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/health/live", "GET").route(web::get().to(live)))
        .service(resource("/health/ready", "GET").route(web::get().to(ready)))
        .service(resource("/metrics", "GET").route(web::get().to(metrics)));
}

#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    checks: Vec<Check>,
}

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    /// `UP`, `DOWN` (a required dependency) or `DEGRADED` (an optional one).
    status: &'static str,
    /// A short code of why it is not up (`UNREACHABLE`, `TIMEOUT`, …); the driver's message goes
    /// to the log only.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "UP", checks: Vec::new() })
}

/// 200 while every required dependency answers, else 503 naming the ones that did not. Probes
/// run concurrently so one slow dependency does not hide the state of the others. Each check sets
/// `coupon_dependency_up{dependency}` (Kubernetes probes every few seconds, so the gauge follows).
async fn ready(state: web::Data<OpsState>) -> HttpResponse {
    let timeout = state.probe_timeout;
    let checks = futures::future::join_all(state.dependencies.iter().map(|dependency| async move {
        let probe = &dependency.probe;
        let failure = match actix_web::rt::time::timeout(timeout, probe.check()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(ProbeError::timeout(format!("no answer within {timeout:?}"))),
        };
        metrics::gauge!("coupon_dependency_up", "dependency" => probe.name())
            .set(if failure.is_none() { 1.0 } else { 0.0 });
        let Some(failure) = failure else {
            return Check { name: probe.name(), status: "UP", reason: None };
        };
        tracing::warn!(dependency = probe.name(), reason = failure.reason, error = %failure.detail, "readiness check failed");
        let status = if dependency.required { "DOWN" } else { "DEGRADED" };
        Check { name: probe.name(), status, reason: Some(failure.reason) }
    }))
    .await;
    let down = checks.iter().any(|c| c.status == "DOWN");
    let degraded = checks.iter().any(|c| c.status == "DEGRADED");
    let status = if down {
        "DOWN"
    } else if degraded {
        "DEGRADED"
    } else {
        "UP"
    };
    let body = Health { status, checks };
    if !down {
        return HttpResponse::Ok().json(body);
    }
    let mut response = HttpResponse::ServiceUnavailable().json(body);
    response.extensions_mut().insert(Verbatim);
    response
}

async fn metrics(state: web::Data<OpsState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body((state.render_metrics)())
}
