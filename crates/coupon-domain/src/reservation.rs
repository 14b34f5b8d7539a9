//! Reservations (SPEC §4.4): the hold a checkout puts on a coupon, and how it ends.
//!
//! One aggregate serves `reserve` and `apply`. The rules (who may hold which coupon, what the
//! discount is, which confirmations are honoured, what a release may free) are the pure
//! `decide_*` functions below. A [`ReservationStore`] runs each operation in one transaction: it
//! locks the coupon, loads what the rule needs, asks the rule, and writes the outcome with its
//! outbox event. The HTTP endpoints and the Kafka consumers call the same [`Checkout`] use case.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::coupon::IssuedCoupon;
use crate::discount::DiscountError;
use crate::event::EventContext;
use crate::id::{CouponId, UserId};
use crate::lifecycle::{Forbidden, Transition, next};
use crate::money::Money;
use crate::policy::Policy;
use crate::port::{PortFuture, StoreError};

/// Status of a reservation (SPEC §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReservationStatus {
    Pending,
    Confirmed,
    Cancelled,
    Expired,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Pending => "PENDING",
            ReservationStatus::Confirmed => "CONFIRMED",
            ReservationStatus::Cancelled => "CANCELLED",
            ReservationStatus::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Confirmed, Self::Cancelled, Self::Expired].into_iter().find(|r| r.as_str() == s)
    }
}

/// A client-chosen reservation id: 1–50 characters of `A-Z a-z 0-9 _ -` (SPEC §4.4), case kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReservationId(String);

/// Why a string is not a reservation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a reservationId is 1 to 50 characters of letters, digits, '_' and '-'")]
pub struct InvalidReservationId;

impl ReservationId {
    /// # Errors
    /// When the input is empty, too long, or has other characters (nothing is trimmed: the id is
    /// the client's key, byte for byte).
    pub fn parse(raw: &str) -> Result<Self, InvalidReservationId> {
        let legal = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if raw.is_empty() || raw.len() > 50 || !raw.chars().all(legal) {
            return Err(InvalidReservationId);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An order or payment reference from another service: 1 to `max` printable characters, kept
/// as given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExternalRef(String);

/// Why a string is not an order or payment reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to {max} characters without control characters")]
pub struct InvalidRef {
    pub max: usize,
}

impl ExternalRef {
    /// Longest order id (`order_id VARCHAR(50)`).
    pub const ORDER_MAX: usize = 50;
    /// Longest payment id (`payment_id VARCHAR(100)`).
    pub const PAYMENT_MAX: usize = 100;

    /// # Errors
    /// Empty, longer than `max` characters, or with control characters.
    pub fn parse(raw: &str, max: usize) -> Result<Self, InvalidRef> {
        if raw.is_empty() || raw.chars().count() > max || raw.chars().any(char::is_control) {
            return Err(InvalidRef { max });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a hold ended without a use (`coupon.cancelled` `data.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CancelReason {
    /// `payment.failed`.
    PaymentFailed,
    /// `order.cancelled` (before payment, or a restore after it).
    OrderCancelled,
    /// The reservation-timeout job.
    ReservationTimeout,
    /// `DELETE /api/coupons/apply/{id}` (or `/reserve/{id}`).
    Released,
}

impl CancelReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::PaymentFailed => "PAYMENT_FAILED",
            CancelReason::OrderCancelled => "ORDER_CANCELLED",
            CancelReason::ReservationTimeout => "RESERVATION_TIMEOUT",
            CancelReason::Released => "RESERVATION_RELEASED",
        }
    }
}

/// A reservation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: ReservationId,
    pub coupon_id: CouponId,
    pub user_id: UserId,
    pub order_id: Option<ExternalRef>,
    pub order_amount: Money,
    /// Computed once, at reserve time, and honoured by the confirmation.
    pub discount: Money,
    pub status: ReservationStatus,
    pub reserved_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub payment_id: Option<ExternalRef>,
    pub confirmed_at: Option<DateTime<Utc>>,
    /// Confirmed after it had timed out (SPEC §4.4).
    pub late_confirmation: bool,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
}

impl Reservation {
    /// What the customer pays: the order amount less the discount.
    pub fn final_amount(&self) -> Money {
        Money::new(self.order_amount.amount() - self.discount.amount())
    }
}

/// What a checkout asks to hold.
#[derive(Debug, Clone)]
pub struct ReserveRequest {
    pub reservation_id: ReservationId,
    pub user: UserId,
    pub coupon: CouponId,
    pub order_amount: Money,
    pub order_id: Option<ExternalRef>,
}

/// A confirmation: `POST /api/coupons/use` or `payment.completed`.
#[derive(Debug, Clone)]
pub struct ConfirmRequest {
    pub reservation_id: ReservationId,
    pub order_id: ExternalRef,
    pub payment_id: Option<ExternalRef>,
    /// Set by the HTTP endpoint: the reservation must be this user's.
    pub user: Option<UserId>,
    /// Set by `payment.completed`: what the payment says about the reservation it settles.
    pub payment: Option<PaymentClaims>,
}

/// What a payment event (`payment.completed`, `payment.failed`) says about the reservation it
/// settles. The reservation id is the payment service's reference, but a payment whose user,
/// coupon or order differs from the reservation's was made for something else (a bug or a forged
/// record upstream): it changes nothing and goes to the DLQ as `PAYMENT_MISMATCH` (SPEC §10).
/// The amount is not compared: a payment's amount may include more than the coupon's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentClaims {
    pub user: Option<UserId>,
    pub coupon: Option<CouponId>,
    pub order: Option<ExternalRef>,
}

/// A field of a payment that differs from its reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The payment's field name (`userId`, `couponId`, `orderId`).
    pub field: &'static str,
    /// The reservation's value.
    pub expected: String,
    /// The payment's value.
    pub received: String,
}

/// The fields of a payment that differ from its reservation (at least one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the payment does not match its reservation: {}", describe(.0))]
pub struct PaymentMismatch(pub Vec<Mismatch>);

fn describe(mismatches: &[Mismatch]) -> String {
    let fields: Vec<String> = mismatches
        .iter()
        .map(|m| format!("{} expected {} received {}", m.field, m.expected, m.received))
        .collect();
    fields.join(", ")
}

impl PaymentClaims {
    /// The payment cross-check of SPEC §10: every field the payment carries must equal the
    /// reservation's (an order id only when the reservation recorded one).
    ///
    /// # Errors
    /// The fields that differ.
    pub fn check(&self, reservation: &Reservation) -> Result<(), PaymentMismatch> {
        let mut mismatches = Vec::new();
        let mut compare = |field, expected: Option<String>, received: Option<String>| {
            if let (Some(expected), Some(received)) = (expected, received)
                && expected != received
            {
                mismatches.push(Mismatch { field, expected, received });
            }
        };
        compare("userId", Some(reservation.user_id.to_string()), self.user.map(|u| u.to_string()));
        compare("couponId", Some(reservation.coupon_id.to_string()), self.coupon.map(|c| c.to_string()));
        compare(
            "orderId",
            reservation.order_id.as_ref().map(|o| o.as_str().to_owned()),
            self.order.as_ref().map(|o| o.as_str().to_owned()),
        );
        if mismatches.is_empty() { Ok(()) } else { Err(PaymentMismatch(mismatches)) }
    }
}

/// Why a coupon could not be held.
#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    /// `COUPON_NOT_FOUND`
    #[error("no coupon has this id")]
    CouponNotFound,
    /// `UNAUTHORIZED_COUPON_ACCESS`
    #[error("the coupon belongs to another user")]
    NotOwner,
    /// `COUPON_NOT_AVAILABLE`, `COUPON_ALREADY_USED` or `COUPON_EXPIRED`, by the state machine.
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    /// `INVALID_ORDER_AMOUNT` or `MINIMUM_ORDER_NOT_MET`.
    #[error(transparent)]
    Discount(#[from] DiscountError),
    /// `COUPON_NOT_AVAILABLE`: the reservation id is taken by a different request.
    #[error("reservation {0} already exists for a different coupon, user, order or amount")]
    IdConflict(String),
    /// `COUPON_NOT_AVAILABLE`: the reservation id was used and released; a new hold needs a new id.
    #[error("reservation {0} was released; reserve again under a new reservationId")]
    IdReleased(String),
    /// `RESERVATION_EXPIRED`
    #[error("reservation {0} timed out")]
    IdExpired(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a reservation could not be confirmed.
#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    /// `RESERVATION_NOT_FOUND`
    #[error("no reservation has this id")]
    NotFound,
    /// `UNAUTHORIZED_COUPON_ACCESS`
    #[error("the reservation belongs to another user")]
    NotOwner,
    /// `COUPON_NOT_AVAILABLE`: the reservation was made for another order.
    #[error("the reservation is for another order")]
    OrderMismatch,
    /// `COUPON_ALREADY_USED`: confirmed already, by another payment.
    #[error("the coupon was already used by another payment")]
    UsedByAnotherPayment,
    /// `COUPON_NOT_AVAILABLE`: the reservation was released before the payment arrived.
    #[error("the reservation was released")]
    Released,
    /// `RESERVATION_EXPIRED`: it timed out and the coupon was re-reserved, used or expired
    /// meanwhile (SPEC §4.4), so the late payment cannot be honoured.
    #[error("the reservation timed out and the coupon has moved on")]
    Expired,
    /// `PAYMENT_MISMATCH` (payments only): the payment was made for another user, coupon or order.
    #[error(transparent)]
    PaymentMismatch(#[from] PaymentMismatch),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a release was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// `RESERVATION_NOT_FOUND`
    #[error("no reservation has this id")]
    NotFound,
    /// `UNAUTHORIZED_COUPON_ACCESS`
    #[error("the reservation belongs to another user")]
    NotOwner,
    /// `COUPON_ALREADY_USED`: a confirmed use ends only by an order cancellation.
    #[error("the reservation was confirmed; cancel the order to restore the coupon")]
    AlreadyUsed,
    /// `PAYMENT_MISMATCH` (`payment.failed` only): the payment was for another user, coupon or order.
    #[error(transparent)]
    PaymentMismatch(#[from] PaymentMismatch),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an order cancellation touched no coupon.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// `COUPON_NOT_FOUND`
    #[error("no coupon has this id")]
    CouponNotFound,
    /// `RESERVATION_NOT_FOUND`: the coupon was never held for this order.
    #[error("the coupon was never reserved for this order")]
    NotFound,
    /// `COUPON_NOT_AVAILABLE`: the coupon is held or used by another order now.
    #[error("the coupon is held or used by another order")]
    OrderMismatch,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the store found for a reserve, under the coupon's lock.
#[derive(Debug, Clone)]
pub struct ReserveView {
    pub coupon: IssuedCoupon,
    pub policy: Policy,
    /// The reservation already stored under the requested id, whatever its coupon.
    pub existing: Option<Reservation>,
}

/// The outcome the rule chose for a reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveDecision {
    /// The same request again: answer with the reservation already made.
    Replay(Reservation),
    /// Hold the coupon with this discount.
    Hold { discount: Money },
}

/// The reserve rule.
///
/// # Errors
/// See [`ReserveError`].
pub fn decide_reserve(
    view: &ReserveView,
    request: &ReserveRequest,
    now: DateTime<Utc>,
) -> Result<ReserveDecision, ReserveError> {
    if view.coupon.user_id != request.user {
        return Err(ReserveError::NotOwner);
    }
    if let Some(existing) = &view.existing {
        let id = existing.id.as_str().to_owned();
        let same = existing.coupon_id == request.coupon
            && existing.user_id == request.user
            && existing.order_amount == request.order_amount
            && (request.order_id.is_none() || existing.order_id == request.order_id);
        return match existing.status {
            _ if !same => Err(ReserveError::IdConflict(id)),
            ReservationStatus::Pending => Ok(ReserveDecision::Replay(existing.clone())),
            ReservationStatus::Confirmed => Err(Forbidden::AlreadyUsed.into()),
            ReservationStatus::Cancelled => Err(ReserveError::IdReleased(id)),
            ReservationStatus::Expired => Err(ReserveError::IdExpired(id)),
        };
    }
    next(view.coupon.status, Transition::Reserve, now > view.coupon.expires_at)?;
    let discount = view.policy.discount.discount_for(request.order_amount)?;
    Ok(ReserveDecision::Hold { discount })
}

/// What the store found for a confirmation, under the coupon's lock.
#[derive(Debug, Clone)]
pub struct ConfirmView {
    pub reservation: Reservation,
    pub coupon: IssuedCoupon,
    /// Another reservation of the same coupon was made after this one.
    pub superseded: bool,
}

/// The outcome the rule chose for a confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmDecision {
    /// Confirmed already by this payment: answer as before.
    Replay,
    /// Use the coupon; `late` when the reservation had timed out (SPEC §4.4).
    Use { late: bool },
}

/// The confirmation rule, including the late-confirmation rule of SPEC §4.4: a payment that
/// arrives after its reservation timed out is honoured only while the coupon is still free,
/// unexpired and was not reserved again since.
///
/// # Errors
/// See [`ConfirmError`].
pub fn decide_confirm(
    view: &ConfirmView,
    request: &ConfirmRequest,
    now: DateTime<Utc>,
) -> Result<ConfirmDecision, ConfirmError> {
    let reservation = &view.reservation;
    if let Some(claims) = &request.payment {
        claims.check(reservation)?;
    }
    if request.user.is_some_and(|user| user != reservation.user_id) {
        return Err(ConfirmError::NotOwner);
    }
    if reservation.order_id.as_ref().is_some_and(|order| *order != request.order_id) {
        return Err(ConfirmError::OrderMismatch);
    }
    let date_passed = now > view.coupon.expires_at;
    let held_by_this = view.coupon.reservation_id.as_deref() == Some(reservation.id.as_str());
    match reservation.status {
        ReservationStatus::Confirmed if reservation.payment_id == request.payment_id => {
            Ok(ConfirmDecision::Replay)
        }
        ReservationStatus::Confirmed => Err(ConfirmError::UsedByAnotherPayment),
        ReservationStatus::Cancelled => Err(ConfirmError::Released),
        ReservationStatus::Pending if held_by_this => {
            next(view.coupon.status, Transition::Confirm, date_passed)
                .map_err(|_| ConfirmError::Store(inconsistent(view)))?;
            Ok(ConfirmDecision::Use { late: now > reservation.expires_at })
        }
        ReservationStatus::Pending => Err(ConfirmError::Store(inconsistent(view))),
        ReservationStatus::Expired => {
            if view.superseded || view.coupon.reservation_id.is_some() {
                return Err(ConfirmError::Expired);
            }
            // Honouring it is a new hold and its use at once, under the same rules.
            next(view.coupon.status, Transition::Reserve, date_passed)
                .and_then(|held| next(held, Transition::Confirm, date_passed))
                .map_err(|_| ConfirmError::Expired)?;
            Ok(ConfirmDecision::Use { late: true })
        }
    }
}

fn inconsistent(view: &ConfirmView) -> StoreError {
    StoreError::Unexpected(anyhow::anyhow!(
        "reservation {} is PENDING but coupon {} is {} held by {:?}",
        view.reservation.id.as_str(),
        view.coupon.id,
        view.coupon.status.as_str(),
        view.coupon.reservation_id
    ))
}

/// Who ends a hold, which decides what the release rule checks.
#[derive(Debug, Clone, Copy)]
pub enum ReleasedBy<'a> {
    /// `DELETE /api/coupons/apply/{id}`: the reservation must be this user's.
    Owner(UserId),
    /// `payment.failed`: the payment must be for this reservation.
    Payment(&'a PaymentClaims),
    /// A trusted service call without a user.
    Service,
}

impl ReleasedBy<'_> {
    /// The release port's caller: a user, or a service when none.
    pub fn user(user: Option<UserId>) -> Self {
        user.map_or(ReleasedBy::Service, ReleasedBy::Owner)
    }
}

/// The outcome the rule chose for a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseDecision {
    /// Ended already (released or timed out): nothing to do, answer with it.
    Replay,
    /// End the hold and give the coupon back.
    Free,
}

/// The release rule. A reservation that is no longer the coupon's hold frees nothing, so an old
/// reservation never frees a coupon that a newer one holds.
///
/// # Errors
/// See [`ReleaseError`].
pub fn decide_release(
    reservation: &Reservation,
    by: ReleasedBy<'_>,
) -> Result<ReleaseDecision, ReleaseError> {
    match by {
        ReleasedBy::Owner(user) if user != reservation.user_id => return Err(ReleaseError::NotOwner),
        ReleasedBy::Payment(claims) => claims.check(reservation)?,
        ReleasedBy::Owner(_) | ReleasedBy::Service => {}
    }
    match reservation.status {
        ReservationStatus::Pending => Ok(ReleaseDecision::Free),
        ReservationStatus::Cancelled | ReservationStatus::Expired => Ok(ReleaseDecision::Replay),
        ReservationStatus::Confirmed => Err(ReleaseError::AlreadyUsed),
    }
}

/// What the store found for an order cancellation, under the coupon's lock.
#[derive(Debug, Clone)]
pub struct RestoreView {
    pub coupon: IssuedCoupon,
    /// The latest reservation of the coupon for the cancelled order.
    pub reservation: Option<Reservation>,
}

/// The outcome the rule chose for an order cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreDecision {
    /// The hold was still pending: release it (reason `ORDER_CANCELLED`).
    Release,
    /// The coupon was used by the order: give it back, or expire it if its date passed.
    Restore { expired: bool },
    /// Handled before (the event came again): nothing to do.
    Replay,
}

/// The order-cancellation rule (`order.cancelled` carries `couponId` + `orderId`).
///
/// # Errors
/// See [`RestoreError`].
pub fn decide_restore(view: &RestoreView, now: DateTime<Utc>) -> Result<RestoreDecision, RestoreError> {
    let Some(reservation) = &view.reservation else {
        return Err(RestoreError::NotFound);
    };
    let held_by_this = view.coupon.reservation_id.as_deref() == Some(reservation.id.as_str());
    match reservation.status {
        ReservationStatus::Pending if held_by_this => Ok(RestoreDecision::Release),
        ReservationStatus::Confirmed if held_by_this => {
            match next(view.coupon.status, Transition::Restore, now > view.coupon.expires_at) {
                Ok(status) => {
                    Ok(RestoreDecision::Restore { expired: status == crate::coupon::CouponStatus::Expired })
                }
                Err(_) => Err(RestoreError::OrderMismatch),
            }
        }
        ReservationStatus::Pending | ReservationStatus::Confirmed => Err(RestoreError::OrderMismatch),
        ReservationStatus::Cancelled | ReservationStatus::Expired => Ok(RestoreDecision::Replay),
    }
}

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

/// The two-phase use of a coupon: hold at checkout, then confirm, release or restore.
#[derive(Clone)]
pub struct Checkout {
    store: Arc<dyn ReservationStore>,
    clock: Arc<dyn Clock>,
    timeout: Duration,
}

impl std::fmt::Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Checkout {
    pub fn new(store: Arc<dyn ReservationStore>, clock: Arc<dyn Clock>, timeout: Duration) -> Self {
        Self { store, clock, timeout }
    }

    fn context(&self, correlation_id: String) -> EventContext {
        EventContext { correlation_id, occurred_at: self.clock.now() }
    }

    /// `POST /api/coupons/reserve` and `/apply`: holds the coupon for `COUPON_RESERVATION_TIMEOUT`.
    ///
    /// # Errors
    /// See [`ReserveError`].
    pub async fn reserve(
        &self,
        request: &ReserveRequest,
        correlation_id: String,
    ) -> Result<Reserved, ReserveError> {
        if !request.order_amount.is_positive() {
            return Err(DiscountError::InvalidOrderAmount.into());
        }
        let context = self.context(correlation_id);
        let now = context.occurred_at;
        let timeout = chrono::Duration::from_std(self.timeout)
            .map_err(|e| StoreError::Unexpected(anyhow::Error::new(e).context("reservation timeout")))?;
        let command = ReserveCommand { request, now, expires_at: now + timeout, context: &context };
        self.store.reserve(command).await
    }

    /// `POST /api/coupons/use` and `payment.completed`.
    ///
    /// # Errors
    /// See [`ConfirmError`].
    pub async fn confirm(
        &self,
        request: &ConfirmRequest,
        correlation_id: String,
    ) -> Result<Confirmed, ConfirmError> {
        let context = self.context(correlation_id);
        self.store.confirm(request, context.occurred_at, &context).await
    }

    /// `DELETE /api/coupons/apply/{id}` (user set) and `payment.failed` (user unset).
    ///
    /// # Errors
    /// See [`ReleaseError`].
    pub async fn release(
        &self,
        id: &ReservationId,
        user: Option<UserId>,
        reason: CancelReason,
        correlation_id: String,
    ) -> Result<Released, ReleaseError> {
        let context = self.context(correlation_id);
        self.store.release(id, user, reason, context.occurred_at, &context).await
    }

    /// `order.cancelled`.
    ///
    /// # Errors
    /// See [`RestoreError`].
    pub async fn cancel_order(
        &self,
        coupon: CouponId,
        order: &ExternalRef,
        correlation_id: String,
    ) -> Result<Released, RestoreError> {
        let context = self.context(correlation_id);
        self.store.cancel_order(coupon, order, context.occurred_at, &context).await
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::coupon::CouponStatus;
    use crate::fakes::policy;
    use crate::policy::DistributionType;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 10, 10, 0, 0).single().unwrap_or_else(|| panic!("valid instant"))
    }

    fn id(raw: &str) -> ReservationId {
        ReservationId::parse(raw).unwrap_or_else(|e| panic!("{e}"))
    }

    fn order(raw: &str) -> ExternalRef {
        ExternalRef::parse(raw, ExternalRef::ORDER_MAX).unwrap_or_else(|e| panic!("{e}"))
    }

    fn user(n: i64) -> UserId {
        UserId::new(n).unwrap_or_else(|| panic!("user {n}"))
    }

    fn coupon(status: CouponStatus, held_by: Option<&str>) -> IssuedCoupon {
        IssuedCoupon {
            id: CouponId::new(7).unwrap_or_else(|| panic!("coupon id")),
            policy_id: crate::id::PolicyId::new(1).unwrap_or_else(|| panic!("policy id")),
            user_id: user(42),
            status,
            issued_at: t0() - chrono::Duration::days(1),
            expires_at: t0() + chrono::Duration::days(1),
            reserved_at: held_by.map(|_| t0()),
            used_at: None,
            reservation_id: held_by.map(str::to_owned),
            order_id: None,
            discount_amount: None,
        }
    }

    fn reservation(raw: &str, status: ReservationStatus) -> Reservation {
        Reservation {
            id: id(raw),
            coupon_id: CouponId::new(7).unwrap_or_else(|| panic!("coupon id")),
            user_id: user(42),
            order_id: Some(order("ORDER-1")),
            order_amount: Money::from(50_000),
            discount: Money::from(1_000),
            status,
            reserved_at: t0(),
            expires_at: t0() + chrono::Duration::minutes(10),
            payment_id: None,
            confirmed_at: None,
            late_confirmation: false,
            cancelled_at: None,
            cancel_reason: None,
        }
    }

    fn request(raw: &str, amount: i64) -> ReserveRequest {
        ReserveRequest {
            reservation_id: id(raw),
            user: user(42),
            coupon: CouponId::new(7).unwrap_or_else(|| panic!("coupon id")),
            order_amount: Money::from(amount),
            order_id: Some(order("ORDER-1")),
        }
    }

    fn reserve_view(status: CouponStatus, existing: Option<Reservation>) -> ReserveView {
        ReserveView {
            coupon: coupon(status, None),
            policy: policy(1, DistributionType::Download, None, t0()),
            existing,
        }
    }

    #[test]
    fn a_free_coupon_is_held_with_the_policy_discount() {
        let decision =
            decide_reserve(&reserve_view(CouponStatus::Issued, None), &request("R1", 50_000), t0());
        assert_eq!(decision.ok(), Some(ReserveDecision::Hold { discount: Money::from(1_000) }));
    }

    #[test]
    fn reserve_refusals() {
        let view = reserve_view(CouponStatus::Issued, None);
        let mut other = request("R1", 50_000);
        other.user = user(43);
        assert!(matches!(decide_reserve(&view, &other, t0()), Err(ReserveError::NotOwner)));
        let after_expiry = t0() + chrono::Duration::days(2);
        assert!(matches!(
            decide_reserve(&view, &request("R1", 50_000), after_expiry),
            Err(ReserveError::Forbidden(Forbidden::Expired))
        ));
        assert!(matches!(
            decide_reserve(&reserve_view(CouponStatus::Reserved, None), &request("R2", 50_000), t0()),
            Err(ReserveError::Forbidden(Forbidden::NotAvailable))
        ));
        assert!(matches!(
            decide_reserve(&reserve_view(CouponStatus::Used, None), &request("R2", 50_000), t0()),
            Err(ReserveError::Forbidden(Forbidden::AlreadyUsed))
        ));
    }

    #[test]
    fn the_same_reservation_id_replays_only_the_same_request() {
        let pending = reservation("R1", ReservationStatus::Pending);
        let view = reserve_view(CouponStatus::Reserved, Some(pending.clone()));
        assert_eq!(
            decide_reserve(&view, &request("R1", 50_000), t0()).ok(),
            Some(ReserveDecision::Replay(pending))
        );
        assert!(matches!(
            decide_reserve(&view, &request("R1", 60_000), t0()),
            Err(ReserveError::IdConflict(_))
        ));
        let ended = |status| reserve_view(CouponStatus::Issued, Some(reservation("R1", status)));
        assert!(matches!(
            decide_reserve(&ended(ReservationStatus::Cancelled), &request("R1", 50_000), t0()),
            Err(ReserveError::IdReleased(_))
        ));
        assert!(matches!(
            decide_reserve(&ended(ReservationStatus::Expired), &request("R1", 50_000), t0()),
            Err(ReserveError::IdExpired(_))
        ));
    }

    fn confirm(payment: &str) -> ConfirmRequest {
        ConfirmRequest {
            reservation_id: id("R1"),
            order_id: order("ORDER-1"),
            payment_id: Some(
                ExternalRef::parse(payment, ExternalRef::PAYMENT_MAX).unwrap_or_else(|e| panic!("{e}")),
            ),
            user: None,
            payment: None,
        }
    }

    fn confirm_view(status: ReservationStatus, coupon: IssuedCoupon, superseded: bool) -> ConfirmView {
        ConfirmView { reservation: reservation("R1", status), coupon, superseded }
    }

    #[test]
    fn a_pending_hold_is_confirmed_late_only_after_its_timeout() {
        let view =
            confirm_view(ReservationStatus::Pending, coupon(CouponStatus::Reserved, Some("R1")), false);
        assert_eq!(
            decide_confirm(&view, &confirm("P1"), t0()).ok(),
            Some(ConfirmDecision::Use { late: false })
        );
        let later = t0() + chrono::Duration::minutes(11);
        assert_eq!(
            decide_confirm(&view, &confirm("P1"), later).ok(),
            Some(ConfirmDecision::Use { late: true })
        );
        let mut wrong_order = confirm("P1");
        wrong_order.order_id = order("ORDER-2");
        assert!(matches!(decide_confirm(&view, &wrong_order, t0()), Err(ConfirmError::OrderMismatch)));
        let mut stranger = confirm("P1");
        stranger.user = Some(user(43));
        assert!(matches!(decide_confirm(&view, &stranger, t0()), Err(ConfirmError::NotOwner)));
    }

    #[test]
    fn a_payment_for_another_user_coupon_or_order_changes_nothing() {
        let view =
            confirm_view(ReservationStatus::Pending, coupon(CouponStatus::Reserved, Some("R1")), false);
        let paid = |claims: PaymentClaims| ConfirmRequest { payment: Some(claims), ..confirm("P1") };
        let matching =
            PaymentClaims { user: Some(user(42)), coupon: CouponId::new(7), order: Some(order("ORDER-1")) };
        assert_eq!(
            decide_confirm(&view, &paid(matching.clone()), t0()).ok(),
            Some(ConfirmDecision::Use { late: false })
        );
        assert_eq!(
            decide_confirm(&view, &paid(PaymentClaims::default()), t0()).ok(),
            Some(ConfirmDecision::Use { late: false }),
            "fields a payment leaves out are not compared"
        );
        let forged =
            PaymentClaims { user: Some(user(43)), coupon: CouponId::new(8), order: Some(order("ORDER-2")) };
        let Err(ConfirmError::PaymentMismatch(PaymentMismatch(fields))) =
            decide_confirm(&view, &paid(forged), t0())
        else {
            panic!("a forged payment must be refused")
        };
        let named: Vec<(&str, &str, &str)> =
            fields.iter().map(|m| (m.field, m.expected.as_str(), m.received.as_str())).collect();
        assert_eq!(
            named,
            [("userId", "42", "43"), ("couponId", "7", "8"), ("orderId", "ORDER-1", "ORDER-2")]
        );
        let mut confirmed = view.clone();
        confirmed.reservation.status = ReservationStatus::Confirmed;
        let other_user = PaymentClaims { user: Some(user(43)), ..matching };
        assert!(
            matches!(
                decide_confirm(&confirmed, &paid(other_user), t0()),
                Err(ConfirmError::PaymentMismatch(_))
            ),
            "checked before any replay"
        );
    }

    #[test]
    fn a_confirmation_replays_for_the_same_payment_only() {
        let mut view =
            confirm_view(ReservationStatus::Confirmed, coupon(CouponStatus::Used, Some("R1")), false);
        view.reservation.payment_id = confirm("P1").payment_id;
        assert_eq!(decide_confirm(&view, &confirm("P1"), t0()).ok(), Some(ConfirmDecision::Replay));
        assert!(matches!(
            decide_confirm(&view, &confirm("P2"), t0()),
            Err(ConfirmError::UsedByAnotherPayment)
        ));
        let released = confirm_view(ReservationStatus::Cancelled, coupon(CouponStatus::Issued, None), false);
        assert!(matches!(decide_confirm(&released, &confirm("P1"), t0()), Err(ConfirmError::Released)));
    }

    #[test]
    fn the_late_confirmation_rule_of_spec_4_4() {
        let later = t0() + chrono::Duration::minutes(11);
        let free = confirm_view(ReservationStatus::Expired, coupon(CouponStatus::Issued, None), false);
        assert_eq!(
            decide_confirm(&free, &confirm("P1"), later).ok(),
            Some(ConfirmDecision::Use { late: true })
        );
        let refused = [
            (
                "re-reserved and held",
                confirm_view(ReservationStatus::Expired, coupon(CouponStatus::Reserved, Some("R2")), true),
            ),
            (
                "re-reserved and released",
                confirm_view(ReservationStatus::Expired, coupon(CouponStatus::Issued, None), true),
            ),
            ("used", confirm_view(ReservationStatus::Expired, coupon(CouponStatus::Used, Some("R2")), true)),
            (
                "expired by the job",
                confirm_view(ReservationStatus::Expired, coupon(CouponStatus::Expired, None), false),
            ),
        ];
        for (case, view) in refused {
            assert!(
                matches!(decide_confirm(&view, &confirm("P1"), later), Err(ConfirmError::Expired)),
                "{case}"
            );
        }
        let past_date = t0() + chrono::Duration::days(2);
        assert!(
            matches!(decide_confirm(&free, &confirm("P1"), past_date), Err(ConfirmError::Expired)),
            "expired by date"
        );
    }

    #[test]
    fn release_and_restore_rules() {
        let pending = reservation("R1", ReservationStatus::Pending);
        assert_eq!(decide_release(&pending, ReleasedBy::Owner(user(42))).ok(), Some(ReleaseDecision::Free));
        assert!(matches!(decide_release(&pending, ReleasedBy::Owner(user(43))), Err(ReleaseError::NotOwner)));
        let expired = reservation("R1", ReservationStatus::Expired);
        assert_eq!(decide_release(&expired, ReleasedBy::Service).ok(), Some(ReleaseDecision::Replay));
        let confirmed = reservation("R1", ReservationStatus::Confirmed);
        assert!(matches!(decide_release(&confirmed, ReleasedBy::Service), Err(ReleaseError::AlreadyUsed)));
        let stranger = PaymentClaims { user: Some(user(43)), ..PaymentClaims::default() };
        assert!(matches!(
            decide_release(&pending, ReleasedBy::Payment(&stranger)),
            Err(ReleaseError::PaymentMismatch(_))
        ));
        let same = PaymentClaims { user: Some(user(42)), ..PaymentClaims::default() };
        assert_eq!(decide_release(&pending, ReleasedBy::Payment(&same)).ok(), Some(ReleaseDecision::Free));

        let view = |status, coupon| RestoreView { coupon, reservation: Some(reservation("R1", status)) };
        let used = coupon(CouponStatus::Used, Some("R1"));
        assert_eq!(
            decide_restore(&view(ReservationStatus::Confirmed, used.clone()), t0()).ok(),
            Some(RestoreDecision::Restore { expired: false })
        );
        let past_date = t0() + chrono::Duration::days(2);
        assert_eq!(
            decide_restore(&view(ReservationStatus::Confirmed, used), past_date).ok(),
            Some(RestoreDecision::Restore { expired: true })
        );
        let held = coupon(CouponStatus::Reserved, Some("R1"));
        assert_eq!(
            decide_restore(&view(ReservationStatus::Pending, held), t0()).ok(),
            Some(RestoreDecision::Release)
        );
        let used_by_other = coupon(CouponStatus::Used, Some("R2"));
        assert!(matches!(
            decide_restore(&view(ReservationStatus::Confirmed, used_by_other), t0()),
            Err(RestoreError::OrderMismatch)
        ));
        let restored = coupon(CouponStatus::Issued, None);
        assert_eq!(
            decide_restore(&view(ReservationStatus::Cancelled, restored.clone()), t0()).ok(),
            Some(RestoreDecision::Replay)
        );
        assert!(matches!(
            decide_restore(&RestoreView { coupon: restored, reservation: None }, t0()),
            Err(RestoreError::NotFound)
        ));
    }

    #[test]
    fn external_references() {
        assert!(ExternalRef::parse("ORDER-2024-0001", ExternalRef::ORDER_MAX).is_ok());
        assert!(ExternalRef::parse("", ExternalRef::ORDER_MAX).is_err());
        assert!(ExternalRef::parse(&"x".repeat(51), ExternalRef::ORDER_MAX).is_err());
        assert!(ExternalRef::parse("a\nb", ExternalRef::ORDER_MAX).is_err());
        let mut r = reservation("R1", ReservationStatus::Pending);
        r.discount = Money::from(5_000);
        assert_eq!(r.final_amount(), Money::from(45_000));
    }

    #[test]
    fn reservation_ids_are_kept_as_given() {
        assert_eq!(ReservationId::parse("RESV-2024_0001").map(|r| r.0), Ok("RESV-2024_0001".to_owned()));
        for bad in ["", " RESV", "a b", "résa", &"x".repeat(51)] {
            assert_eq!(ReservationId::parse(bad), Err(InvalidReservationId), "{bad:?}");
        }
        assert!(ReservationId::parse(&"x".repeat(50)).is_ok());
        assert_eq!(ReservationStatus::parse("PENDING"), Some(ReservationStatus::Pending));
        assert_eq!(ReservationStatus::parse("pending"), None);
    }
}
