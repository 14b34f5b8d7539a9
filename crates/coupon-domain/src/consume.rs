//! Consumed events (SPEC §3.3, §6): what a record asks for, and the port that applies a
//! partition's records exactly once.

use chrono::{DateTime, Utc};

use crate::id::{CouponId, PolicyId, UserId};
use crate::port::{PortFuture, StoreError};
use crate::reservation::{ConfirmRequest, ExternalRef, Mismatch, PaymentClaims, ReservationId};

/// What a consumed record asks for.
#[derive(Debug, Clone)]
pub enum Command {
    /// `payment.completed`: confirm the reservation (the late rule of SPEC §4.4 included).
    Confirm(ConfirmRequest),
    /// `payment.failed`: release the reservation, if the payment was for it.
    Release { reservation_id: ReservationId, payment: PaymentClaims },
    /// `order.cancelled`: release the order's hold on the coupon, or restore the used coupon.
    CancelOrder { coupon: CouponId, order: ExternalRef },
    /// `coupon.issue-requested`: issue one coupon of an EVENT policy to the user.
    Issue { policy: PolicyId, user: UserId },
    /// Nothing to change (`payment.completed` without a reservation: no coupon was involved).
    Nothing,
}

/// A record that could be read.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The producer's `eventId`: a redelivered record finds it and changes nothing.
    pub event_id: String,
    pub correlation_id: String,
    pub command: Command,
}

/// One record of a partition, as received: key and value are bytes, whatever their encoding, so
/// that a DLQ record can carry them unchanged.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// The record, or why it cannot be processed (malformed, unknown type): straight to the DLQ.
    pub parsed: Result<Parsed, String>,
}

/// A record on its way to `{topic}.DLQ`: the record as received, where it came from, and why it
/// was not applied.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    pub source: &'a Source,
    pub delivery: &'a Delivery,
    /// The SPEC §6/§10 reason code, possibly followed by `": "` and a detail.
    pub reason: &'a str,
    /// For `PAYMENT_MISMATCH`: the fields that differ from the reservation.
    pub mismatches: &'a [Mismatch],
    pub failed_at: DateTime<Utc>,
}

/// Where the records come from, and where the ones that cannot be applied go.
#[derive(Debug, Clone)]
pub struct Source {
    pub topic: String,
    pub partition: i32,
    pub dead_letter_topic: String,
}

/// What became of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Its `eventId` was applied before.
    Duplicate,
    /// Nothing to do.
    Nothing,
    /// Written to the DLQ with this reason.
    DeadLettered(String),
}

impl Outcome {
    /// The label of metrics and of `processed_events.outcome`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Applied => "APPLIED",
            Outcome::Duplicate => "DUPLICATE",
            Outcome::Nothing => "NOTHING",
            Outcome::DeadLettered(_) => "DEAD_LETTERED",
        }
    }
}

/// Applying records failed.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// The partition's offset is not where this consumer expected it: another consumer owns the
    /// partition now. Nothing was applied.
    #[error("the partition's offset moved: another consumer owns it")]
    Fenced,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The consumed side of the store.
pub trait Inbox: Send + Sync + 'static {
    /// Where consumption of the partition resumes (`None`: from the start).
    fn next_offset<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
    ) -> PortFuture<'a, Result<Option<i64>, StoreError>>;
    /// Applies `deliveries` (consecutive, the first at offset `from`) in one transaction: each
    /// record's effect, its dedupe row, its DLQ record when it cannot be applied, and the
    /// partition's offset past the last one. All or nothing.
    fn apply<'a>(
        &'a self,
        source: &'a Source,
        from: i64,
        deliveries: &'a [Delivery],
        now: DateTime<Utc>,
    ) -> PortFuture<'a, Result<Vec<Outcome>, InboxError>>;
    /// Deletes up to `limit` dedupe records of events processed before `before`; returns how
    /// many. Records are kept longer than any topic keeps its records, so that no redelivery can
    /// outlive its dedupe record (SPEC §10).
    fn prune(&self, before: DateTime<Utc>, limit: u32) -> PortFuture<'_, Result<u64, StoreError>>;
}
