//! Domain events: what happened to a coupon, told to the rest of the platform through the
//! transactional outbox (SPEC §3.2, §6). The wire format is not the domain's business: an
//! [`EventEncoder`] (implemented by the Kafka adapter) turns an event into its envelope, and the
//! store writes that envelope in the same transaction as the change.

use chrono::{DateTime, Utc};

use crate::budget::Budget;
use crate::consume::DeadLetter;
use crate::coupon::{ExpiryReason, IssuedCoupon};
use crate::id::PolicyId;
use crate::policy::Policy;
use crate::reservation::{CancelReason, Reservation};
use crate::support::Revocation;

pub use crate::context::EventContext;
use crate::reservation::{Change, Changed};

/// Something that happened to a coupon.
#[derive(Debug, Clone)]
pub enum CouponEvent<'a> {
    /// `coupon.issued`
    Issued { coupon: &'a IssuedCoupon, policy: &'a Policy },
    /// `coupon.reserved`: a checkout holds the coupon.
    Reserved { reservation: &'a Reservation },
    /// `coupon.used`: the reservation was confirmed.
    Used { reservation: &'a Reservation, used_at: DateTime<Utc> },
    /// `coupon.cancelled`: a hold or a use ended without a sale.
    Cancelled { reservation: &'a Reservation, reason: CancelReason, cancelled_at: DateTime<Utc> },
    /// `coupon.cancelled` with reason `ADMIN_REVOKED`: an admin took the coupon back.
    Revoked { coupon: &'a IssuedCoupon, revocation: &'a Revocation, revoked_at: DateTime<Utc> },
    /// `coupon.expired`: the coupon passed its date, or its policy was deactivated.
    Expired { coupon: &'a IssuedCoupon, reason: ExpiryReason },
    /// `coupon.budget-threshold`: a policy's budget usage reached `threshold` percent (SPEC §11.5).
    BudgetThreshold { policy: PolicyId, threshold: u8, budget: Budget },
}

/// An event ready for the outbox: its topic, record key and complete wire payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    /// Unique per event (a UUID), the envelope's `eventId`.
    pub event_id: String,
    pub topic: String,
    /// Record key; events of one coupon share it, so they stay in order on one partition (a
    /// budget event's key is its policy).
    pub key: String,
    pub event_type: &'static str,
    pub payload: String,
}

/// Turns domain events into outbox rows.
pub trait EventEncoder: Send + Sync + 'static {
    /// # Errors
    /// Serialisation failed (a bug, not an input problem); the change is then not committed.
    fn encode(&self, event: &CouponEvent<'_>, context: &EventContext) -> anyhow::Result<EncodedEvent>;

    /// The DLQ record of a consumed record that was not applied. Whatever the record's key and
    /// value hold, the result fits the outbox: a record that cannot be dead-lettered would stall
    /// its partition (SPEC §10).
    ///
    /// # Errors
    /// Serialisation failed (a bug).
    fn dead_letter(&self, letter: &DeadLetter<'_>) -> anyhow::Result<EncodedEvent>;
}

impl Changed {
    /// The event that records the change: `coupon.reserved`, `coupon.used` or `coupon.cancelled`.
    pub fn event(&self) -> CouponEvent<'_> {
        let reservation = &self.reservation;
        match self.change {
            Change::Held => CouponEvent::Reserved { reservation },
            Change::Confirmed { at } => CouponEvent::Used { reservation, used_at: at },
            Change::Cancelled { reason, at } => {
                CouponEvent::Cancelled { reservation, reason, cancelled_at: at }
            }
        }
    }
}
