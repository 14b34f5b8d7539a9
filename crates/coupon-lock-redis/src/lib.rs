//! Redis adapters: an accelerator and a guard in front of PostgreSQL, never the only record of
//! anything (SPEC §3.1). Everything kept here is either rebuildable from PostgreSQL (stock gates,
//! caches) or harmless to lose (rate-limit counters, locks that carry a TTL).
//!
//! It knows the domain's ports and nothing of PostgreSQL, Kafka or HTTP.

mod batch;
pub mod gate;
pub mod limits;
pub mod pool;
