//! Policy administration (SPEC §5, admin endpoints): create, read, list, change within the allowed
//! directions, deactivate, set the cap, statistics, and the public code check.

use std::sync::Arc;

use crate::clock::Clock;
use crate::gate::StockGate;
use crate::id::PolicyId;
use crate::idempotency::Receipt;
use crate::policy::{
    CapChange, ChangeRefused, CouponCode, CreatePolicyError, DistributionType, NewPolicy, NotIssuable,
    Policy, PolicyChange, PolicyStatistics, SavePolicyError, SetCapError,
};
use crate::policy_store::PolicyStore;
use crate::port::StoreError;

/// A change could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ChangePolicyError {
    #[error(transparent)]
    Refused(#[from] ChangeRefused),
    #[error(transparent)]
    Save(#[from] SavePolicyError),
}

/// The answer of `GET /api/coupons/validate/{code}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeCheck {
    /// The code as entered, or normalised when it parses.
    pub code: String,
    pub valid: bool,
    pub message: &'static str,
    /// No policy has this code: counts towards a code-guessing block.
    pub unknown: bool,
}

/// The policy administration use case.
#[derive(Clone)]
pub struct PolicyAdmin {
    policies: Arc<dyn PolicyStore>,
    gate: Arc<dyn StockGate>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for PolicyAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyAdmin").finish_non_exhaustive()
    }
}

impl PolicyAdmin {
    pub fn new(policies: Arc<dyn PolicyStore>, gate: Arc<dyn StockGate>, clock: Arc<dyn Clock>) -> Self {
        Self { policies, gate, clock }
    }

    /// # Errors
    /// `DuplicateCode`, or the store is unavailable.
    pub async fn create(
        &self,
        policy: NewPolicy,
        receipt: Option<&Receipt>,
    ) -> Result<Policy, CreatePolicyError> {
        self.policies.create(policy, self.clock.now(), receipt).await
    }

    /// # Errors
    /// The store is unavailable.
    pub async fn get(&self, id: PolicyId) -> Result<Option<Policy>, StoreError> {
        self.policies.get(id).await
    }

    /// # Errors
    /// The store is unavailable.
    pub async fn list(&self, after: Option<PolicyId>, limit: u32) -> Result<Vec<Policy>, StoreError> {
        self.policies.list(after, limit).await
    }

    /// Applies `change` to the current version of the policy.
    ///
    /// # Errors
    /// The change lowers the cap or shortens the window, the policy is gone or was changed
    /// concurrently, or the store is unavailable.
    pub async fn change(
        &self,
        id: PolicyId,
        change: &PolicyChange,
        receipt: Option<&Receipt>,
    ) -> Result<Policy, ChangePolicyError> {
        let current =
            self.policies.get(id).await.map_err(SavePolicyError::from)?.ok_or(SavePolicyError::NotFound)?;
        let next = change.apply(&current)?;
        let saved = self.policies.save(&next, self.clock.now(), receipt).await?;
        self.forget_gate(id).await;
        Ok(saved)
    }

    /// Stops issuing; coupons already issued stay usable.
    ///
    /// # Errors
    /// As [`PolicyAdmin::change`].
    pub async fn deactivate(
        &self,
        id: PolicyId,
        receipt: Option<&Receipt>,
    ) -> Result<Policy, ChangePolicyError> {
        self.change(id, &PolicyChange { is_active: Some(false), ..PolicyChange::default() }, receipt).await
    }

    /// `PATCH …/remaining-quantity`: any cap not below the issued count.
    ///
    /// # Errors
    /// `BelowIssued` with the issued count, `NotFound`, or the store is unavailable.
    pub async fn set_max_issue_count(
        &self,
        id: PolicyId,
        cap: u32,
        receipt: Option<&Receipt>,
    ) -> Result<CapChange, SetCapError> {
        let change = self.policies.set_max_issue_count(id, cap, self.clock.now(), receipt).await?;
        self.forget_gate(id).await;
        Ok(change)
    }

    /// # Errors
    /// The store is unavailable.
    pub async fn statistics(&self, id: PolicyId) -> Result<Option<PolicyStatistics>, StoreError> {
        self.policies.statistics(id, self.clock.now()).await
    }

    /// Whether a code can be redeemed now. Unknown and unissuable codes are answers, not errors.
    ///
    /// # Errors
    /// The store is unavailable.
    pub async fn check_code(&self, raw: &str) -> Result<CodeCheck, StoreError> {
        let Ok(code) = CouponCode::parse(raw) else {
            return Ok(CodeCheck {
                code: raw.trim().to_owned(),
                valid: false,
                message: "This is not a valid coupon code",
                unknown: true,
            });
        };
        let answer =
            |valid, message| CodeCheck { code: code.as_str().to_owned(), valid, message, unknown: false };
        let policy = match self.policies.find_by_code(&code).await? {
            Some(policy) => Some(policy),
            None => match self.policies.find_unique_code(&code).await? {
                Some(unique) if unique.redeemed => {
                    return Ok(answer(false, "This code was already redeemed"));
                }
                Some(unique) => self.policies.get(unique.policy).await?,
                None => None,
            },
        };
        let Some(policy) = policy else {
            return Ok(CodeCheck { unknown: true, ..answer(false, "No coupon has this code") });
        };
        Ok(match policy.check_issuable(DistributionType::Code, self.clock.now()) {
            Ok(()) if policy.is_sold_out() => answer(false, "The coupon is sold out"),
            Ok(()) => answer(true, "The coupon can be issued"),
            Err(NotIssuable::Inactive | NotIssuable::WrongChannel) => {
                answer(false, "This coupon is not available")
            }
            Err(NotIssuable::NotStarted) => answer(false, "The issuance period has not started"),
            Err(NotIssuable::Ended) => answer(false, "The issuance period has ended"),
            Err(NotIssuable::SoldOut) => answer(false, "The coupon is sold out"),
        })
    }

    /// The gate of a changed policy is rebuilt from the store on next use; failing to drop it
    /// only delays that (the store still decides).
    async fn forget_gate(&self, id: PolicyId) {
        if let Err(e) = self.gate.forget(id).await {
            tracing::warn!(policy.id = %id, error = %e, "cannot reset the stock gate");
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::clock::{Clock, SystemClock};
    use chrono::Duration;

    use super::*;
    use crate::fakes::{InMemoryPolicyStore, ManualClock, ScriptedGate, block_on, policy};
    use crate::gate::GateDecision;

    fn admin(policies: Vec<Policy>) -> (PolicyAdmin, Arc<ScriptedGate>, Arc<ManualClock>) {
        let gate = Arc::new(ScriptedGate::answering(Ok(GateDecision::Admitted)));
        let clock = Arc::new(ManualClock::at(SystemClock.now()));
        (
            PolicyAdmin::new(Arc::new(InMemoryPolicyStore::with(policies)), gate.clone(), clock.clone()),
            gate,
            clock,
        )
    }

    #[test]
    fn code_checks_answer_rather_than_fail() {
        let now = SystemClock.now();
        let mut sold_out = policy(2, DistributionType::Code, Some(1), now);
        sold_out.current_issue_count = 1;
        let (admin, _, clock) = admin(vec![policy(1, DistributionType::Code, None, now), sold_out]);
        let check = |code: &str| block_on(admin.check_code(code)).expect("answered");

        let ok = check(" code1 ");
        assert_eq!((ok.code.as_str(), ok.valid, ok.unknown), ("CODE1", true, false));
        assert_eq!((check("CODE2").valid, check("CODE2").unknown), (false, false));
        assert_eq!((check("CODE9").valid, check("CODE9").unknown), (false, true));
        assert_eq!((check("not a code").valid, check("not a code").unknown), (false, true));
        clock.advance(Duration::days(2));
        assert_eq!(check("CODE1").message, "The issuance period has ended");
    }

    #[test]
    fn changes_to_stock_reset_the_gate() {
        let (admin, gate, _) =
            admin(vec![policy(1, DistributionType::FirstCome, Some(10), SystemClock.now())]);
        let id = PolicyId::new(1).expect("id");
        block_on(admin.set_max_issue_count(id, 20, None)).expect("cap set");
        block_on(admin.change(
            id,
            &PolicyChange { max_issue_count: Some(30), ..PolicyChange::default() },
            None,
        ))
        .expect("changed");
        block_on(admin.deactivate(id, None)).expect("deactivated");
        assert_eq!(gate.calls(), ["forget 1", "forget 1", "forget 1"]);
        assert!(matches!(
            block_on(admin.change(
                id,
                &PolicyChange { max_issue_count: Some(5), ..PolicyChange::default() },
                None
            )),
            Err(ChangePolicyError::Refused(ChangeRefused::CapLowered { .. }))
        ));
    }
}
