//! Readiness probes. Each adapter exposes a [`Probe`] for its dependency, and the binary that
//! composes them says which ones it cannot work without; the HTTP layer reports them by name.

use std::future::Future;
use std::pin::Pin;

/// The future a probe returns; boxed so that probes of different adapters sit in one list.
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ProbeError>> + Send + 'a>>;

/// A cheap round trip to one dependency (PostgreSQL, Redis, the Kafka broker).
pub trait Probe: Send + Sync + 'static {
    /// Stable name used in the readiness body, metrics and logs, e.g. `postgres`.
    fn name(&self) -> &'static str;

    /// Succeeds when the dependency answered within the adapter's timeout.
    fn check(&self) -> ProbeFuture<'_>;
}

/// Why a dependency is considered down: a short reason code that health bodies may show, and the
/// driver's detail, which only logs see (it can name hosts, users and internal addresses).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct ProbeError {
    /// `UNREACHABLE`, `TIMEOUT`, `AUTH_FAILED`, `UNEXPECTED_REPLY`, `NOT_CONNECTED`, `ERROR`, or for a
    /// TLS connection `TLS_UNAVAILABLE`, `TLS_CERTIFICATE`, `TLS_HOST_NAME`, `TLS_ERROR`.
    pub reason: &'static str,
    pub detail: String,
}

impl ProbeError {
    /// No connection could be made (refused, reset, pool unable to connect).
    pub fn unreachable(detail: impl ToString) -> Self {
        Self { reason: "UNREACHABLE", detail: detail.to_string() }
    }

    /// No answer in time.
    pub fn timeout(detail: impl ToString) -> Self {
        Self { reason: "TIMEOUT", detail: detail.to_string() }
    }

    /// The dependency refused the credentials (user, password).
    pub fn auth_failed(detail: impl ToString) -> Self {
        Self { reason: "AUTH_FAILED", detail: detail.to_string() }
    }

    /// An answer that a healthy dependency does not give.
    pub fn unexpected_reply(detail: impl ToString) -> Self {
        Self { reason: "UNEXPECTED_REPLY", detail: detail.to_string() }
    }

    /// The client has not reached the dependency yet (it connects in the background).
    pub fn not_connected(detail: impl ToString) -> Self {
        Self { reason: "NOT_CONNECTED", detail: detail.to_string() }
    }

    /// The dependency answered with an error.
    pub fn error(detail: impl ToString) -> Self {
        Self { reason: "ERROR", detail: detail.to_string() }
    }
}
