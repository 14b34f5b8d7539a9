//! The coupon domain: entities, value types, rules and the ports (traits) that adapters implement.
//!
//! Architecture invariant: this crate does no I/O. It knows nothing of PostgreSQL, Redis, Kafka,
//! HTTP, configuration files or the tokio runtime; use cases are `async` only because they await
//! ports. Serializable wire shapes (rows, DTOs, event payloads) live in the adapter crates.

pub mod administration;
pub mod allotment;
pub mod budget;
pub mod clock;
pub mod codes;
pub mod consume;
pub mod context;
pub mod coupon;
pub mod dead_letters;
pub mod discount;
pub mod event;
#[cfg(test)]
mod fakes;
pub mod gate;
pub mod id;
pub mod idempotency;
pub mod issue;
pub mod jobs;
pub mod lifecycle;
pub mod limits;
pub mod money;
pub mod policy;
pub mod policy_cache;
pub mod policy_store;
pub mod port;
pub mod probe;
pub mod quote;
pub mod reconciliation;
pub mod relay;
pub mod reservation;
pub mod sold_out;
pub mod stacking;
pub mod support;
pub mod wallet;
