//! The outbox relay's view of the world (SPEC §3.2, §6): rows waiting to be published, and the
//! leases by which event-worker pods divide work among themselves.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::port::{PortFuture, StoreError};

/// An outbox row not yet published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    /// Position in the outbox; per key, publication follows this order.
    pub id: i64,
    pub topic: String,
    pub key: String,
    /// The complete envelope, published byte for byte.
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

/// What is waiting in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub rows: u64,
    pub oldest: Option<DateTime<Utc>>,
}

/// The outbox table, seen from the relay.
pub trait Outbox: Send + Sync + 'static {
    /// Up to `limit` unpublished rows, oldest first.
    fn pending(&self, limit: u32) -> PortFuture<'_, Result<Vec<OutboxRecord>, StoreError>>;
    /// The rows reached the broker.
    fn mark_published<'a>(
        &'a self,
        ids: &'a [i64],
        at: DateTime<Utc>,
    ) -> PortFuture<'a, Result<(), StoreError>>;
    /// A publish attempt failed: counted on the rows, which stay unpublished.
    fn mark_failed<'a>(&'a self, ids: &'a [i64], error: &'a str) -> PortFuture<'a, Result<(), StoreError>>;
    /// Of the oldest `limit` rows, deletes those published before `before`; returns how many.
    fn prune(&self, before: DateTime<Utc>, limit: u32) -> PortFuture<'_, Result<u64, StoreError>>;
    fn backlog(&self) -> PortFuture<'_, Result<Backlog, StoreError>>;
}

/// Named leases shared by the pods, on the store's clock (so pods' clocks need not agree).
pub trait Leases: Send + Sync + 'static {
    /// Takes the lease if it is free or lapsed, or renews it if `holder` has it; `true` when
    /// `holder` holds it for `period` from now.
    fn hold<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        period: Duration,
    ) -> PortFuture<'a, Result<bool, StoreError>>;
    /// Gives the lease up (no-op unless `holder` has it).
    fn release<'a>(&'a self, name: &'a str, holder: &'a str) -> PortFuture<'a, Result<(), StoreError>>;
    /// The live leases whose names start with `prefix`, as (name, holder), by name.
    fn live<'a>(&'a self, prefix: &'a str) -> PortFuture<'a, Result<Vec<(String, String)>, StoreError>>;
}
