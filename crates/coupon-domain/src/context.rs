//! Where a change comes from: the request or consumed event that caused it.

use chrono::{DateTime, Utc};

use crate::idempotency::Receipt;

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
    /// The idempotency key of the request behind the change: its answer commits with the change.
    pub receipt: Option<Receipt>,
}

impl EventContext {
    /// A change the service makes for a client, an event or a job.
    pub fn new(correlation_id: String, occurred_at: DateTime<Utc>) -> Self {
        Self { correlation_id, occurred_at, origin: Origin::Service, receipt: None }
    }
}

/// The request behind a use case: its correlation id and, when the client sent an
/// `Idempotency-Key`, the receipt its effect commits with.
#[derive(Debug, Clone, Default)]
pub struct Cause {
    pub correlation_id: String,
    pub receipt: Option<Receipt>,
}

impl Cause {
    /// The context of the change this request makes at `occurred_at`.
    pub fn context(self, occurred_at: DateTime<Utc>, origin: Origin) -> EventContext {
        EventContext { correlation_id: self.correlation_id, occurred_at, origin, receipt: self.receipt }
    }
}

impl From<String> for Cause {
    fn from(correlation_id: String) -> Self {
        Self { correlation_id, receipt: None }
    }
}

impl From<&str> for Cause {
    fn from(correlation_id: &str) -> Self {
        correlation_id.to_owned().into()
    }
}
