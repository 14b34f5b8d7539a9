//! Where a change comes from: the request or consumed event that caused it.

use chrono::{DateTime, Utc};

/// Who asked for a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    /// A client of the service, a consumed event or a job.
    #[default]
    Service,
    /// An admin acting on a coupon (SPEC §11.2: `metadata.source` `ADMIN`).
    Admin,
}

/// Where the event comes from.
#[derive(Debug, Clone)]
pub struct EventContext {
    /// Ties the event to the request or event that caused it (`metadata.correlationId`).
    pub correlation_id: String,
    pub occurred_at: DateTime<Utc>,
    pub origin: Origin,
}

impl EventContext {
    /// A change the service makes for a client, an event or a job.
    pub fn new(correlation_id: String, occurred_at: DateTime<Utc>) -> Self {
        Self { correlation_id, occurred_at, origin: Origin::Service }
    }
}
