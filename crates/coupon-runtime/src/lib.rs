//! Process plumbing that `api-server`, `event-worker` and `scheduler` share: layered settings,
//! structured logging, the Prometheus recorder and the shutdown signal.
//!
//! It knows nothing of coupons and depends on no adapter; the binaries compose it with the
//! adapters. Keep it that way: business code does not belong here.

/// This process's name among its peers, for leases and job locks: host (the pod name on
/// Kubernetes), process id and a random part, so that a restarted pod is a new holder.
pub fn instance_id() -> String {
    format!(
        "{}:{}:{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into()),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

pub mod metrics;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
