//! The rules of a checkout as pure functions: given what the store found, what happens.

use chrono::{DateTime, Utc};

use crate::budget::{Budget, BudgetExhausted};
use crate::coupon::{CouponStatus, IssuedCoupon};
use crate::discount::DiscountError;
use crate::id::UserId;
use crate::lifecycle::{Forbidden, Transition, next};
use crate::money::Money;
use crate::policy::Policy;
use crate::port::StoreError;
use crate::stacking::{NotStackable, OrderStack, Rejoin, Share};

use super::*;

/// What the store found for a reserve, under the coupon's lock.
#[derive(Debug, Clone)]
pub struct ReserveView {
    pub coupon: IssuedCoupon,
    pub policy: Policy,
    /// The reservation already stored under the requested id, whatever its coupon.
    pub existing: Option<Reservation>,
    /// The policy's budget, less what holds decided before this one took of it.
    pub budget: Option<Budget>,
    /// What the live reservations of the requested order hold (nothing without an orderId).
    pub order: OrderStack,
}

/// The outcome the rule chose for a reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveDecision {
    /// The same request again: answer with the reservation already made.
    Replay(Reservation),
    /// Hold the coupon on these terms.
    Hold(HoldTerms),
}

/// What a hold takes: its discount, its share of the order (none without an orderId), and the
/// policy's budget after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldTerms {
    pub discount: Money,
    pub share: Option<Share>,
    pub budget: Option<Budget>,
}

/// What a hold of a coupon its caller owns is judged on, borrowed from whoever read it (a
/// reserve's view, or a quote's wallet).
#[derive(Debug, Clone, Copy)]
pub struct HoldView<'a> {
    pub status: CouponStatus,
    pub expires_at: DateTime<Utc>,
    pub policy: &'a Policy,
    pub budget: Option<Budget>,
    /// What the order's live reservations hold; `None` without an orderId.
    pub order: Option<OrderStack>,
    pub order_amount: Money,
}

/// Why the hold rule refuses a coupon: its state, the discount, the order's stack or the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HoldRefused {
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error(transparent)]
    Discount(#[from] DiscountError),
    #[error(transparent)]
    NotStackable(#[from] NotStackable),
    #[error(transparent)]
    BudgetExhausted(#[from] BudgetExhausted),
}

impl From<HoldRefused> for ReserveError {
    fn from(refused: HoldRefused) -> Self {
        match refused {
            HoldRefused::Forbidden(e) => e.into(),
            HoldRefused::Discount(e) => e.into(),
            HoldRefused::NotStackable(e) => e.into(),
            HoldRefused::BudgetExhausted(e) => e.into(),
        }
    }
}

/// The reserve rule: the owner, a replay, the coupon's state, the discount (SPEC §4.4), then the
/// order's stack (§11.4) and the policy's budget (§11.5).
///
/// # Errors
/// See [`ReserveError`].
pub fn decide_reserve(
    view: &ReserveView,
    request: &ReserveRequest,
    now: DateTime<Utc>,
    rules: &CheckoutRules,
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
    let hold = HoldView {
        status: view.coupon.status,
        expires_at: view.coupon.expires_at,
        policy: &view.policy,
        budget: view.budget,
        order: request.order_id.as_ref().map(|_| view.order),
        order_amount: request.order_amount,
    };
    Ok(ReserveDecision::Hold(decide_hold(&hold, now, rules)?))
}

/// The hold rule, once the owner and a replay are settled: the coupon's state, the discount
/// (SPEC §4.4), then the order's stack (§11.4) and the policy's budget (§11.5). A quote judges
/// each coupon with it.
///
/// # Errors
/// See [`HoldRefused`].
pub fn decide_hold(
    view: &HoldView<'_>,
    now: DateTime<Utc>,
    rules: &CheckoutRules,
) -> Result<HoldTerms, HoldRefused> {
    next(view.status, Transition::Reserve, now > view.expires_at)?;
    let discount = view.policy.discount.discount_for(view.order_amount)?;
    let share = match view.order {
        Some(order) => Some(order.take(view.policy.stackable, rules.max_per_order)?),
        None => None,
    };
    let mut budget = view.budget;
    if let Some(budget) = &mut budget {
        budget.admit(discount)?;
    }
    Ok(HoldTerms { discount, share, budget })
}

/// What the store found for a confirmation, under the coupon's lock.
#[derive(Debug, Clone)]
pub struct ConfirmView {
    pub reservation: Reservation,
    pub coupon: IssuedCoupon,
    /// Another reservation of the same coupon was made after this one.
    pub superseded: bool,
    /// For a timed-out reservation that held a share of its order: that share and the order's
    /// stack now.
    pub rejoin: Option<Rejoin>,
    /// The coupon's policy budget, when it has one.
    pub budget: Option<Budget>,
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
/// unexpired and was not reserved again since, and while its order's stack and its policy's
/// budget still have room for it (§11.4, §11.5).
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
            let order_taken = view.rejoin.is_some_and(|rejoin| !rejoin.fits());
            if view.superseded || order_taken || view.coupon.reservation_id.is_some() {
                return Err(ConfirmError::Expired);
            }
            if let Some(mut budget) = view.budget {
                budget.admit(reservation.discount).map_err(|_| ConfirmError::Expired)?;
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
                Ok(status) => Ok(RestoreDecision::Restore { expired: status == CouponStatus::Expired }),
                Err(_) => Err(RestoreError::OrderMismatch),
            }
        }
        ReservationStatus::Pending | ReservationStatus::Confirmed => Err(RestoreError::OrderMismatch),
        ReservationStatus::Cancelled | ReservationStatus::Expired => Ok(RestoreDecision::Replay),
    }
}
