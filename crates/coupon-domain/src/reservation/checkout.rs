//! The `Checkout` use case: hold at checkout, then confirm, release or restore.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::context::{Cause, EventContext, Origin};
use crate::discount::DiscountError;
use crate::id::{CouponId, PolicyId, UserId};
use crate::port::StoreError;

use super::*;

/// The two-phase use of a coupon: hold at checkout, then confirm, release or restore.
#[derive(Clone)]
pub struct Checkout {
    store: Arc<dyn ReservationStore>,
    clock: Arc<dyn Clock>,
    timeout: Duration,
    rules: Arc<CheckoutRules>,
    /// Who the changes are made for (their events' `metadata.source`).
    origin: Origin,
}

impl std::fmt::Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Checkout {
    pub fn new(
        store: Arc<dyn ReservationStore>,
        clock: Arc<dyn Clock>,
        timeout: Duration,
        rules: CheckoutRules,
    ) -> Self {
        Self { store, clock, timeout, rules: Arc::new(rules), origin: Origin::Service }
    }

    /// The same checkout, acting for an admin.
    pub fn for_admin(&self) -> Self {
        Self { origin: Origin::Admin, ..self.clone() }
    }

    fn context(&self, cause: Cause) -> EventContext {
        cause.context(self.clock.now(), self.origin)
    }

    /// `POST /api/coupons/reserve` and `/apply`: holds the coupon for `COUPON_RESERVATION_TIMEOUT`.
    ///
    /// # Errors
    /// See [`ReserveError`].
    pub async fn reserve(&self, request: &ReserveRequest, cause: Cause) -> Result<Reserved, ReserveError> {
        if !request.order_amount.is_positive() {
            return Err(DiscountError::InvalidOrderAmount.into());
        }
        let context = self.context(cause);
        let now = context.occurred_at;
        let timeout = chrono::Duration::from_std(self.timeout)
            .map_err(|e| StoreError::Unexpected(anyhow::Error::new(e).context("reservation timeout")))?;
        let command =
            ReserveCommand { request, now, expires_at: now + timeout, context: &context, rules: &self.rules };
        let reserved = self.store.reserve(command).await?;
        if reserved.policy.budget_amount.is_some() && !reserved.replay {
            self.announce_budget(reserved.policy.id, &context).await;
        }
        Ok(reserved)
    }

    /// A hold that took from a budget may have reached a threshold. The hold stands either way:
    /// a failure here is logged, and the next hold of the policy announces what is due.
    async fn announce_budget(&self, policy: PolicyId, context: &EventContext) {
        if let Err(e) = self.store.announce_budget(policy, &self.rules.budget_thresholds, context).await {
            tracing::warn!(policy.id = %policy, error = %e, "budget thresholds not announced; the next hold retries");
        }
    }

    /// `POST /api/coupons/use` and `payment.completed`.
    ///
    /// # Errors
    /// See [`ConfirmError`].
    pub async fn confirm(&self, request: &ConfirmRequest, cause: Cause) -> Result<Confirmed, ConfirmError> {
        let context = self.context(cause);
        let confirmed = self.store.confirm(request, context.occurred_at, &context).await?;
        // A late confirmation takes from the budget again (its timeout gave the discount back).
        if confirmed.reservation.late_confirmation && !confirmed.replay {
            self.announce_budget(confirmed.policy, &context).await;
        }
        Ok(confirmed)
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
        cause: Cause,
    ) -> Result<Released, ReleaseError> {
        let context = self.context(cause);
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
        cause: Cause,
    ) -> Result<Released, RestoreError> {
        let context = self.context(cause);
        self.store.cancel_order(coupon, order, context.occurred_at, &context).await
    }
}
