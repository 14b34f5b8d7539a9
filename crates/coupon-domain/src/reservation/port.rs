//! The store port of checkouts and what its operations answer.

use chrono::{DateTime, Utc};

use crate::context::EventContext;
use crate::coupon::IssuedCoupon;
use crate::id::{CouponId, UserId};
use crate::policy::Policy;
use crate::port::PortFuture;

use super::*;

/// A reserve, ready for the store.
#[derive(Debug, Clone)]
pub struct ReserveCommand<'a> {
    pub request: &'a ReserveRequest,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub context: &'a EventContext,
}

/// A held coupon.
#[derive(Debug, Clone)]
pub struct Reserved {
    pub reservation: Reservation,
    pub coupon: IssuedCoupon,
    pub policy: Policy,
    /// The same request was answered before; nothing changed this time.
    pub replay: bool,
}

/// A confirmed reservation.
#[derive(Debug, Clone)]
pub struct Confirmed {
    pub reservation: Reservation,
    pub replay: bool,
}

/// A release or order cancellation handled.
#[derive(Debug, Clone)]
pub struct Released {
    pub reservation: Reservation,
    pub replay: bool,
}

/// Reservations and their effect on coupons. Each method is one transaction that locks the
/// coupon, asks the matching `decide_*` rule, and writes the change with its outbox event
/// (`coupon.reserved`, `coupon.used`, `coupon.cancelled`, `coupon.expired`). Resolves after commit.
pub trait ReservationStore: Send + Sync + 'static {
    fn reserve<'a>(&'a self, command: ReserveCommand<'a>) -> PortFuture<'a, Result<Reserved, ReserveError>>;
    fn confirm<'a>(
        &'a self,
        request: &'a ConfirmRequest,
        now: DateTime<Utc>,
        context: &'a EventContext,
    ) -> PortFuture<'a, Result<Confirmed, ConfirmError>>;
    fn release<'a>(
        &'a self,
        id: &'a ReservationId,
        user: Option<UserId>,
        reason: CancelReason,
        now: DateTime<Utc>,
        context: &'a EventContext,
    ) -> PortFuture<'a, Result<Released, ReleaseError>>;
    /// `order.cancelled`: releases the order's hold on the coupon, or restores the coupon it used.
    fn cancel_order<'a>(
        &'a self,
        coupon: CouponId,
        order: &'a ExternalRef,
        now: DateTime<Utc>,
        context: &'a EventContext,
    ) -> PortFuture<'a, Result<Released, RestoreError>>;
}
