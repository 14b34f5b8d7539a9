//! Where a change comes from: the request or consumed event that caused it.

use chrono::{DateTime, Utc};

/// Where the event comes from.
#[derive(Debug, Clone)]
pub struct EventContext {
    /// Ties the event to the request or event that caused it (`metadata.correlationId`).
    pub correlation_id: String,
    pub occurred_at: DateTime<Utc>,
}
