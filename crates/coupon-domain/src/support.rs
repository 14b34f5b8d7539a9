//! Support's actions on one coupon (SPEC §11.2). An admin revokes a coupon given by mistake or
//! abused: the coupon's state machine decides (ISSUED → CANCELLED), and the store applies the
//! change with `coupon.cancelled` (reason `ADMIN_REVOKED`) in one transaction. An admin marks a
//! coupon used for an order taken outside the checkout: an ISSUED coupon is held and confirmed
//! through the checkout's own rules (the discount of SPEC §4.5), a held one has its reservation
//! confirmed; every event of it says `metadata.source` `ADMIN`.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::context::{Cause, EventContext, Origin};
use crate::coupon::{CouponStatus, IssuedCoupon};
use crate::id::CouponId;
use crate::lifecycle::{Forbidden, Transition, next};
use crate::money::Money;
use crate::policy::Policy;
use crate::port::{PortFuture, StoreError};
use crate::reservation::{
    Checkout, ConfirmError, ConfirmRequest, ExternalRef, ReservationId, ReserveError, ReserveRequest,
};
use crate::wallet::WalletStore;

/// Who revokes, and why (kept in the event for audit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub reason: String,
    pub revoked_by: String,
}

/// What a revoke of the coupon as it stands does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeDecision {
    /// ISSUED → CANCELLED, with its event.
    Revoke,
    /// Revoked before: the same answer, nothing written.
    Replay,
}

/// Whether `coupon` can be revoked `now`: only an ISSUED coupon within its date; a revoked one
/// replays.
///
/// # Errors
/// `NotAvailable` (held by a checkout), `AlreadyUsed`, `Expired` (also by date).
pub fn decide_revoke(coupon: &IssuedCoupon, now: DateTime<Utc>) -> Result<RevokeDecision, Forbidden> {
    if coupon.status == CouponStatus::Cancelled {
        return Ok(RevokeDecision::Replay);
    }
    next(coupon.status, Transition::Revoke, coupon.expires_at < now).map(|_| RevokeDecision::Revoke)
}

/// A coupon revoked by an admin, with its policy (`replay`: it was before this request).
#[derive(Debug, Clone)]
pub struct Revoked {
    pub coupon: IssuedCoupon,
    pub policy: Policy,
    pub replay: bool,
}

/// Why a coupon was not revoked.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// `COUPON_NOT_FOUND`
    #[error("no coupon has this id")]
    NotFound,
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies support's actions.
pub trait SupportStore: Send + Sync + 'static {
    /// In one transaction: reads the coupon, applies [`decide_revoke`] and, for `Revoke`, writes
    /// the coupon `CANCELLED` (its user slot free again) with `coupon.cancelled` reason
    /// `ADMIN_REVOKED`. Resolves after commit.
    fn revoke<'a>(
        &'a self,
        coupon: CouponId,
        revocation: &'a Revocation,
        now: DateTime<Utc>,
        context: &'a EventContext,
    ) -> PortFuture<'a, Result<Revoked, RevokeError>>;
}

/// `POST /api/admin/coupons/{couponId}/use`: the order the coupon was used for, and who says so.
#[derive(Debug, Clone)]
pub struct AdminUse {
    pub order_id: ExternalRef,
    pub order_amount: Money,
    pub used_by: String,
    pub reason: String,
}

/// What an admin's use of the coupon as it stands does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminUseDecision {
    /// ISSUED: hold it for the order, then confirm the hold.
    Hold,
    /// RESERVED: confirm its live reservation.
    Confirm(ReservationId),
    /// Already used for this order: the same answer, nothing written.
    Replay,
}

/// Whether an admin can mark `coupon` used for `order` `now`.
///
/// # Errors
/// `AlreadyUsed` (for another order), `Expired` (also by date), `NotAvailable` (revoked).
pub fn decide_admin_use(
    coupon: &IssuedCoupon,
    order: &ExternalRef,
    now: DateTime<Utc>,
) -> Result<AdminUseDecision, Forbidden> {
    let date_passed = coupon.expires_at < now;
    match coupon.status {
        CouponStatus::Used if coupon.order_id.as_deref() == Some(order.as_str()) => {
            Ok(AdminUseDecision::Replay)
        }
        CouponStatus::Reserved => coupon
            .reservation_id
            .as_deref()
            .and_then(|id| ReservationId::parse(id).ok())
            .map(AdminUseDecision::Confirm)
            .ok_or(Forbidden::NotAvailable),
        status => next(status, Transition::Reserve, date_passed).map(|_| AdminUseDecision::Hold),
    }
}

/// The coupon an admin used, as it is now, with its policy (`replay`: it was before this request).
#[derive(Debug, Clone)]
pub struct AdminUsed {
    pub coupon: IssuedCoupon,
    pub policy: Policy,
    pub replay: bool,
}

/// Why a coupon was not marked used.
#[derive(Debug, thiserror::Error)]
pub enum AdminUseError {
    /// `COUPON_NOT_FOUND`
    #[error("no coupon has this id")]
    NotFound,
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    /// The hold was refused (the minimum order, the amount).
    #[error(transparent)]
    Reserve(#[from] ReserveError),
    /// The confirmation was refused (another order holds the coupon).
    #[error(transparent)]
    Confirm(#[from] ConfirmError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The support use case.
#[derive(Clone)]
pub struct Support {
    store: Arc<dyn SupportStore>,
    coupons: Arc<dyn WalletStore>,
    /// The checkout, acting for an admin.
    checkout: Checkout,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Support {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Support").finish_non_exhaustive()
    }
}

impl Support {
    pub fn new(
        store: Arc<dyn SupportStore>,
        coupons: Arc<dyn WalletStore>,
        checkout: &Checkout,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { store, coupons, checkout: checkout.for_admin(), clock }
    }

    /// `POST /api/admin/coupons/{couponId}/use`: see [`decide_admin_use`]. The hold of an ISSUED
    /// coupon takes the reservation id `ADMIN-{couponId}-{epoch ms}`, so that an order
    /// cancellation finds and restores it like any other use.
    ///
    /// # Errors
    /// See [`AdminUseError`].
    pub async fn use_coupon(
        &self,
        id: CouponId,
        request: &AdminUse,
        cause: Cause,
    ) -> Result<AdminUsed, AdminUseError> {
        let (coupon, policy) = self.coupons.coupon(id).await?.ok_or(AdminUseError::NotFound)?;
        let now = self.clock.now();
        let reservation_id = match decide_admin_use(&coupon, &request.order_id, now)? {
            AdminUseDecision::Replay => return Ok(AdminUsed { coupon, policy, replay: true }),
            AdminUseDecision::Confirm(reservation) => reservation,
            AdminUseDecision::Hold => {
                let reservation = ReservationId::parse(&format!("ADMIN-{id}-{}", now.timestamp_millis()))
                    .map_err(|e| StoreError::Unexpected(anyhow::Error::new(e)))?;
                let hold = ReserveRequest {
                    reservation_id: reservation.clone(),
                    user: coupon.user_id,
                    coupon: id,
                    order_amount: request.order_amount,
                    order_id: Some(request.order_id.clone()),
                };
                self.checkout.reserve(&hold, cause.correlation_id.clone().into()).await?;
                reservation
            }
        };
        let confirm = ConfirmRequest {
            reservation_id,
            order_id: request.order_id.clone(),
            payment_id: None,
            user: None,
            payment: None,
        };
        self.checkout.confirm(&confirm, cause.correlation_id.into()).await?;
        let (coupon, policy) = self.coupons.coupon(id).await?.ok_or(AdminUseError::NotFound)?;
        Ok(AdminUsed { coupon, policy, replay: false })
    }

    /// `POST /api/admin/coupons/{couponId}/revoke`.
    ///
    /// # Errors
    /// See [`RevokeError`].
    pub async fn revoke(
        &self,
        coupon: CouponId,
        revocation: &Revocation,
        cause: Cause,
    ) -> Result<Revoked, RevokeError> {
        let now = self.clock.now();
        let context = cause.context(now, Origin::Admin);
        self.store.revoke(coupon, revocation, now, &context).await
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::id::{PolicyId, UserId};

    fn coupon(status: CouponStatus, expires_in: Duration) -> (IssuedCoupon, DateTime<Utc>) {
        let now = Utc.with_ymd_and_hms(2024, 1, 1, 10, 0, 0).single().expect("instant");
        let coupon = IssuedCoupon {
            id: CouponId::new(1).expect("id"),
            policy_id: PolicyId::new(1).expect("id"),
            user_id: UserId::new(1).expect("id"),
            status,
            issued_at: now - Duration::days(1),
            expires_at: now + expires_in,
            reserved_at: None,
            used_at: None,
            reservation_id: None,
            order_id: None,
            discount_amount: None,
        };
        (coupon, now)
    }

    #[test]
    fn an_admin_use_holds_an_issued_coupon_confirms_a_held_one_and_replays_its_own_order() {
        let day = Duration::days(1);
        let order = ExternalRef::parse("O-1", ExternalRef::ORDER_MAX).expect("order");
        let decide = |status, expires_in, order_id: Option<&str>, held: Option<&str>| {
            let (mut coupon, now) = coupon(status, expires_in);
            coupon.order_id = order_id.map(str::to_owned);
            coupon.reservation_id = held.map(str::to_owned);
            decide_admin_use(&coupon, &order, now)
        };
        assert_eq!(decide(CouponStatus::Issued, day, None, None), Ok(AdminUseDecision::Hold));
        assert_eq!(
            decide(CouponStatus::Reserved, day, None, Some("R-7")),
            Ok(AdminUseDecision::Confirm(ReservationId::parse("R-7").expect("id")))
        );
        assert_eq!(decide(CouponStatus::Used, day, Some("O-1"), Some("R-7")), Ok(AdminUseDecision::Replay));
        assert_eq!(decide(CouponStatus::Used, day, Some("O-2"), Some("R-7")), Err(Forbidden::AlreadyUsed));
        assert_eq!(decide(CouponStatus::Issued, -day, None, None), Err(Forbidden::Expired));
        assert_eq!(decide(CouponStatus::Expired, day, None, None), Err(Forbidden::Expired));
        assert_eq!(decide(CouponStatus::Cancelled, day, None, None), Err(Forbidden::NotAvailable));
    }

    #[test]
    fn only_an_issued_coupon_in_date_is_revoked_and_a_revoked_one_replays() {
        let day = Duration::days(1);
        let decide = |status, expires_in| {
            let (coupon, now) = coupon(status, expires_in);
            decide_revoke(&coupon, now)
        };
        assert_eq!(decide(CouponStatus::Issued, day), Ok(RevokeDecision::Revoke));
        assert_eq!(decide(CouponStatus::Cancelled, day), Ok(RevokeDecision::Replay));
        assert_eq!(decide(CouponStatus::Reserved, day), Err(Forbidden::NotAvailable));
        assert_eq!(decide(CouponStatus::Used, day), Err(Forbidden::AlreadyUsed));
        assert_eq!(decide(CouponStatus::Expired, day), Err(Forbidden::Expired));
        assert_eq!(decide(CouponStatus::Issued, -day), Err(Forbidden::Expired), "past its date");
    }
}
