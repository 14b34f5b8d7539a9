//! Process plumbing that `api-server`, `event-worker` and `scheduler` share: layered settings,
//! structured logging, the Prometheus recorder and the shutdown signal.
//!
//! It knows nothing of coupons and depends on no adapter; the binaries compose it with the
//! adapters. Keep it that way: business code does not belong here.

pub mod metrics;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
