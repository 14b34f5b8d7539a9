//! Why a reserve, confirmation, release or order cancellation was refused.

use crate::budget::BudgetExhausted;
use crate::discount::DiscountError;
use crate::lifecycle::Forbidden;
use crate::port::StoreError;
use crate::stacking::NotStackable;

use super::PaymentMismatch;

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
    /// `COUPON_NOT_STACKABLE`
    #[error(transparent)]
    NotStackable(#[from] NotStackable),
    /// `BUDGET_EXHAUSTED`
    #[error(transparent)]
    BudgetExhausted(#[from] BudgetExhausted),
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
    /// meanwhile (SPEC §4.4), or its order or budget has no room left for it, so the late payment
    /// cannot be honoured.
    #[error("the reservation timed out and the coupon, its order or its budget has moved on")]
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
