//! Consumed events (SPEC §3.3, §6): what a record asks for, what each refusal of it means on the
//! DLQ, the use case that applies a batch of records ([`apply_records`]) and the port that runs it
//! exactly once per partition offset.

mod records;
#[cfg(test)]
mod tests;

pub use records::{Confirmation, RecordEffects, Records, apply_records};

use chrono::{DateTime, Utc};

use crate::id::{CouponId, PolicyId, UserId};
use crate::issue::IssueError;
use crate::limits::LimitRefusal;
use crate::policy::{DistributionType, NotIssuable};
use crate::port::{PortFuture, StoreError};
use crate::reservation::{
    CancelReason, ConfirmError, ConfirmRequest, ExternalRef, Mismatch, PaymentClaims, PaymentMismatch,
    ReleaseError, ReleasedBy, ReservationId, RestoreError,
};

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

/// What a consumed record does, as the domain reads it: the operation, and the meaning the store
/// records with it (who releases, why, through which channel).
#[derive(Debug)]
pub enum Intent<'a> {
    /// `payment.completed`: confirm the reservation (its claims checked against it).
    Confirm(&'a ConfirmRequest),
    /// `payment.failed`: the payment releases its reservation; `coupon.cancelled` says why.
    Release { reservation: &'a ReservationId, by: ReleasedBy<'a>, reason: CancelReason },
    /// `order.cancelled`: release the order's hold on the coupon, or restore the used coupon.
    CancelOrder { coupon: CouponId, order: &'a ExternalRef },
    /// `coupon.issue-requested`: one coupon of the policy, through its channel.
    Issue { policy: PolicyId, user: UserId, channel: DistributionType },
    /// Nothing to change.
    Nothing,
}

impl Command {
    /// What the record does.
    pub fn intent(&self) -> Intent<'_> {
        match self {
            Command::Confirm(request) => Intent::Confirm(request),
            Command::Release { reservation_id, payment } => Intent::Release {
                reservation: reservation_id,
                by: ReleasedBy::Payment(payment),
                reason: CancelReason::PaymentFailed,
            },
            Command::CancelOrder { coupon, order } => Intent::CancelOrder { coupon: *coupon, order },
            Command::Issue { policy, user } => {
                Intent::Issue { policy: *policy, user: *user, channel: DistributionType::Event }
            }
            Command::Nothing => Intent::Nothing,
        }
    }
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
    pub refusal: &'a Refusal,
    pub failed_at: DateTime<Utc>,
}

/// Why a consumed record goes to `{topic}.DLQ` instead of changing anything: the SPEC §6/§10
/// reason code, and for `PAYMENT_MISMATCH` the fields that differ from the reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The reason code, possibly followed by `": "` and a detail (`PROCESSING_FAILED: …`).
    pub reason: String,
    pub mismatches: Vec<Mismatch>,
}

impl Refusal {
    /// The reason of a payment that came after its reservation timed out and found the coupon
    /// moved on (SPEC §4.4).
    pub const LATE_PAYMENT: &'static str = "RESERVATION_EXPIRED";

    pub fn new(reason: impl Into<String>) -> Self {
        Self { reason: reason.into(), mismatches: Vec::new() }
    }

    /// The reason code without its detail.
    pub fn code(&self) -> &str {
        self.reason.split(':').next().unwrap_or(&self.reason)
    }

    fn mismatch(PaymentMismatch(mismatches): PaymentMismatch) -> Self {
        Self { reason: "PAYMENT_MISMATCH".to_owned(), mismatches }
    }
}

impl ConfirmError {
    /// What a `payment.completed` that cannot confirm its reservation means on the DLQ; a store
    /// failure is not a refusal and stays an error.
    pub fn refusal(self) -> Result<Refusal, StoreError> {
        let reason = match self {
            ConfirmError::Store(e) => return Err(e),
            ConfirmError::PaymentMismatch(m) => return Ok(Refusal::mismatch(m)),
            ConfirmError::NotFound => "RESERVATION_NOT_FOUND",
            ConfirmError::NotOwner => "UNAUTHORIZED_COUPON_ACCESS",
            ConfirmError::OrderMismatch | ConfirmError::UsedByAnotherPayment => {
                "COUPON_USED_BY_ANOTHER_ORDER"
            }
            ConfirmError::Released => "RESERVATION_CANCELLED",
            ConfirmError::Expired => Refusal::LATE_PAYMENT,
        };
        Ok(Refusal::new(reason))
    }
}

impl ReleaseError {
    /// What a `payment.failed` that cannot release its reservation means on the DLQ.
    pub fn refusal(self) -> Result<Refusal, StoreError> {
        let reason = match self {
            ReleaseError::Store(e) => return Err(e),
            ReleaseError::PaymentMismatch(m) => return Ok(Refusal::mismatch(m)),
            ReleaseError::NotFound => "RESERVATION_NOT_FOUND",
            ReleaseError::AlreadyUsed => "COUPON_ALREADY_USED",
            ReleaseError::NotOwner => "UNAUTHORIZED_COUPON_ACCESS",
        };
        Ok(Refusal::new(reason))
    }
}

impl RestoreError {
    /// What an `order.cancelled` that cannot release or restore its coupon means on the DLQ.
    pub fn refusal(self) -> Result<Refusal, StoreError> {
        let reason = match self {
            RestoreError::Store(e) => return Err(e),
            RestoreError::CouponNotFound => "COUPON_NOT_FOUND",
            RestoreError::NotFound => "RESERVATION_NOT_FOUND",
            RestoreError::OrderMismatch => "COUPON_USED_BY_ANOTHER_ORDER",
        };
        Ok(Refusal::new(reason))
    }
}

impl IssueError {
    /// What a `coupon.issue-requested` that cannot issue means on the DLQ.
    pub fn refusal(self) -> Result<Refusal, StoreError> {
        let reason = match self {
            IssueError::Unavailable(m) => return Err(StoreError::Unavailable(m)),
            IssueError::Unexpected(e) => return Err(StoreError::Unexpected(e)),
            IssueError::NotIssuable(reason) => return Ok(reason.refusal()),
            IssueError::AlreadyIssued | IssueError::CodeRedeemed => "COUPON_ALREADY_ISSUED",
            // Consumed records are not rate limited; the codes are the API's.
            IssueError::Limited(LimitRefusal::RateLimited(_)) => "RATE_LIMITED",
            IssueError::Limited(LimitRefusal::AccessBlocked) => "ACCESS_BLOCKED",
            IssueError::PolicyNotFound | IssueError::CodeNotFound => "POLICY_NOT_FOUND",
        };
        Ok(Refusal::new(reason))
    }
}

impl NotIssuable {
    /// The SPEC code of a policy that does not issue now, as a DLQ reason.
    pub fn refusal(self) -> Refusal {
        Refusal::new(match self {
            NotIssuable::Inactive => "POLICY_INACTIVE",
            NotIssuable::WrongChannel => "INVALID_ISSUE_TYPE",
            NotIssuable::NotStarted => "COUPON_ISSUE_PERIOD_NOT_STARTED",
            NotIssuable::Ended => "COUPON_ISSUE_PERIOD_EXPIRED",
            NotIssuable::SoldOut => "COUPON_SOLD_OUT",
        })
    }
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
    /// Applies `deliveries` (consecutive, the first at offset `from`) in one transaction: their
    /// [`apply_records`] (each record's effect, or its DLQ record when it cannot be applied), each
    /// record's dedupe row, and the partition's offset past the last one. All or nothing.
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
