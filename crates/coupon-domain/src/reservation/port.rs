//! The store port of checkouts and what its operations answer.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::budget::Thresholds;
use crate::context::EventContext;
use crate::coupon::IssuedCoupon;
use crate::id::{CouponId, PolicyId, UserId};
use crate::policy::Policy;
use crate::port::{PortFuture, StoreError};

use super::*;

/// A reserve, ready for the store.
#[derive(Debug, Clone)]
pub struct ReserveCommand<'a> {
    pub request: &'a ReserveRequest,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub context: &'a EventContext,
    /// Shared, so that a store keeping the command past the call clones a pointer, not the rules.
    pub rules: &'a Arc<CheckoutRules>,
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
    /// The coupon's policy.
    pub policy: PolicyId,
    pub replay: bool,
}

/// The checkout's configured rules.
#[derive(Debug, Clone)]
pub struct CheckoutRules {
    /// `COUPON_MAX_COUPONS_PER_ORDER`: stackable coupons one order may hold (SPEC §11.4).
    pub max_per_order: u16,
    /// `COUPON_BUDGET_THRESHOLDS` (SPEC §11.5).
    pub budget_thresholds: Thresholds,
}

impl Default for CheckoutRules {
    fn default() -> Self {
        Self { max_per_order: 5, budget_thresholds: Thresholds::default() }
    }
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
    /// Announces, with one `coupon.budget-threshold` event each, the thresholds the policy's
    /// budget usage has reached and that no event announced before. Nothing without a budget.
    fn announce_budget<'a>(
        &'a self,
        policy: PolicyId,
        thresholds: &'a Thresholds,
        context: &'a EventContext,
    ) -> PortFuture<'a, Result<(), StoreError>>;
    /// `order.cancelled`: releases the order's hold on the coupon, or restores the coupon it used.
    fn cancel_order<'a>(
        &'a self,
        coupon: CouponId,
        order: &'a ExternalRef,
        now: DateTime<Utc>,
        context: &'a EventContext,
    ) -> PortFuture<'a, Result<Released, RestoreError>>;
}
