//! Support's actions on one coupon (SPEC §11.2): an admin revokes a coupon given by mistake or
//! abused. The coupon's state machine decides (ISSUED → CANCELLED); the store applies the change
//! with `coupon.cancelled` (reason `ADMIN_REVOKED`) in one transaction.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::context::EventContext;
use crate::coupon::{CouponStatus, IssuedCoupon};
use crate::id::CouponId;
use crate::lifecycle::{Forbidden, Transition, next};
use crate::policy::Policy;
use crate::port::{PortFuture, StoreError};

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

/// The support use case.
#[derive(Clone)]
pub struct Support {
    store: Arc<dyn SupportStore>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Support {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Support").finish_non_exhaustive()
    }
}

impl Support {
    pub fn new(store: Arc<dyn SupportStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// `POST /api/admin/coupons/{couponId}/revoke`.
    ///
    /// # Errors
    /// See [`RevokeError`].
    pub async fn revoke(
        &self,
        coupon: CouponId,
        revocation: &Revocation,
        correlation_id: String,
    ) -> Result<Revoked, RevokeError> {
        let now = self.clock.now();
        let context = EventContext { correlation_id, occurred_at: now };
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
