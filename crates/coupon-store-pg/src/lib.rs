//! PostgreSQL adapters: the source of truth of the coupon service (SPEC §3.1).
//!
//! Owns the connection pool, the embedded schema migrations and, as the domain grows, the
//! repositories, outbox, consumer offsets, job locks and statistics queries. Every invariant that
//! matters (no oversell, per-user limit, one use per coupon) is enforced here by a constraint or a
//! conditional update, inside the port implementation's transaction.
//!
//! It knows the domain's ports and nothing of Redis, Kafka or HTTP.

pub mod codes;
mod error;
#[cfg(test)]
mod explain;
pub mod housekeeping;
pub mod idempotency;
pub mod inbox;
pub mod issue;
mod lanes;
pub mod leases;
pub mod migrate;
pub mod outbox;
mod own_thread;
pub mod policy;
pub mod pool;
mod prepared;
pub mod reservation;
mod row;
mod schema;
pub mod support;
pub mod tls;
pub mod wallet;
