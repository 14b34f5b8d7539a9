//! Readiness probes. A binary is ready only when the dependencies it cannot work without answer;
//! each adapter exposes a [`Probe`] and the HTTP layer reports them by name.

use std::future::Future;
use std::pin::Pin;

/// The future a probe returns; boxed so that probes of different adapters sit in one list.
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ProbeError>> + Send + 'a>>;

/// A cheap round trip to one dependency (PostgreSQL, Redis, the Kafka broker).
pub trait Probe: Send + Sync + 'static {
    /// Stable name used in the readiness body and logs, e.g. `postgres`.
    fn name(&self) -> &'static str;

    /// Succeeds when the dependency answered within the adapter's timeout.
    fn check(&self) -> ProbeFuture<'_>;
}

/// Why a dependency is considered down. The message is for operators (readiness body, logs).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ProbeError(pub String);
