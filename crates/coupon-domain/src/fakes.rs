//! In-memory fakes of the ports, for the domain's unit tests. Adapter behaviour is tested against the
//! real services in the adapter crates; these fakes keep the same rules so the use cases can be
//! tested alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;

use crate::clock::Clock;
use crate::coupon::{CouponStatus, IssuedCoupon};
use crate::discount::{DiscountRule, DiscountType};
use crate::gate::{GateDecision, GateUnits, SoldOutMark, SoldOutSnapshot, StockGate};
use crate::id::{CouponId, PolicyId, UserId};
use crate::idempotency::Receipt;
use crate::issue::{CouponStore, IssueCommand, IssueError};
use crate::policy::{
    CapChange, CouponCode, CreatePolicyError, DistributionType, IssuanceWindow, NewPolicy, NotIssuable,
    Policy, PolicyStatistics, SavePolicyError, SetCapError,
};
use crate::policy_store::PolicyStore;
use crate::port::{PortFuture, StoreError};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A clock the test moves.
pub struct ManualClock(pub Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn at(t: DateTime<Utc>) -> Self {
        Self(Mutex::new(t))
    }

    pub fn advance(&self, by: Duration) {
        *lock(&self.0) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *lock(&self.0)
    }
}

/// A policy valid around `now`, issuing through `distribution`.
pub fn policy(id: i64, distribution: DistributionType, cap: Option<u32>, now: DateTime<Utc>) -> Policy {
    Policy {
        id: PolicyId::new(id).unwrap_or_else(|| panic!("policy id {id}")),
        name: format!("Policy {id}"),
        code: (distribution == DistributionType::Code)
            .then(|| CouponCode::parse(&format!("CODE{id}")))
            .and_then(Result::ok),
        description: None,
        discount: DiscountRule::new(DiscountType::FixedAmount, Decimal::from(1000), None, None)
            .unwrap_or_else(|e| panic!("{e}")),
        distribution,
        max_issue_count: cap,
        current_issue_count: 0,
        max_issue_per_user: 1,
        valid_days: 30,
        window: IssuanceWindow::new(now - Duration::days(1), now + Duration::days(1))
            .unwrap_or_else(|e| panic!("{e}")),
        is_active: true,
        code_mode: crate::policy::CodeMode::Shared,
        stackable: false,
        budget_amount: None,
        version: 0,
        created_at: now,
        updated_at: now,
    }
}

/// Policies in a map, counting reads.
#[derive(Default)]
pub struct InMemoryPolicyStore {
    pub policies: Mutex<HashMap<PolicyId, Policy>>,
    pub reads: AtomicUsize,
    /// While set, reads by id never answer (a read still in flight).
    pub stalled: std::sync::atomic::AtomicBool,
}

impl InMemoryPolicyStore {
    pub fn with(policies: impl IntoIterator<Item = Policy>) -> Self {
        let store = Self::default();
        lock(&store.policies).extend(policies.into_iter().map(|p| (p.id, p)));
        store
    }

    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// The store committed `issued` coupons of `id` in all.
    pub fn set_issued(&self, id: PolicyId, issued: u32) {
        if let Some(policy) = lock(&self.policies).get_mut(&id) {
            policy.current_issue_count = issued;
        }
    }
}

impl PolicyStore for InMemoryPolicyStore {
    fn create<'a>(
        &'a self,
        _: NewPolicy,
        _: DateTime<Utc>,
        _: Option<&'a Receipt>,
    ) -> PortFuture<'a, Result<Policy, CreatePolicyError>> {
        Box::pin(async { Err(CreatePolicyError::Store(StoreError::Unavailable("not in this fake".into()))) })
    }

    fn get(&self, id: PolicyId) -> PortFuture<'_, Result<Option<Policy>, StoreError>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.stalled.load(Ordering::SeqCst) {
            return Box::pin(std::future::pending());
        }
        let found = lock(&self.policies).get(&id).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn find_by_code<'a>(
        &'a self,
        code: &'a CouponCode,
    ) -> PortFuture<'a, Result<Option<Policy>, StoreError>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let found = lock(&self.policies).values().find(|p| p.code.as_ref() == Some(code)).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn find_unique_code<'a>(
        &'a self,
        _: &'a CouponCode,
    ) -> PortFuture<'a, Result<Option<crate::policy::UniqueCode>, StoreError>> {
        Box::pin(async move { Ok(None) })
    }

    fn list(&self, _: Option<PolicyId>, _: u32) -> PortFuture<'_, Result<Vec<Policy>, StoreError>> {
        let all = lock(&self.policies).values().cloned().collect();
        Box::pin(async move { Ok(all) })
    }

    fn save<'a>(
        &'a self,
        policy: &'a Policy,
        _: DateTime<Utc>,
        _: Option<&'a Receipt>,
    ) -> PortFuture<'a, Result<Policy, SavePolicyError>> {
        let saved = Policy { version: policy.version + 1, ..policy.clone() };
        lock(&self.policies).insert(policy.id, saved.clone());
        Box::pin(async move { Ok(saved) })
    }

    fn set_max_issue_count<'a>(
        &'a self,
        id: PolicyId,
        cap: u32,
        _: DateTime<Utc>,
        _: Option<&'a Receipt>,
    ) -> PortFuture<'a, Result<CapChange, SetCapError>> {
        let outcome = match lock(&self.policies).get_mut(&id) {
            None => Err(SetCapError::NotFound),
            Some(p) if p.current_issue_count > cap => {
                Err(SetCapError::BelowIssued { issued: p.current_issue_count })
            }
            Some(p) => {
                let previous = p.max_issue_count.replace(cap);
                Ok(CapChange { previous, policy: p.clone() })
            }
        };
        Box::pin(async move { outcome })
    }

    fn statistics(
        &self,
        _: PolicyId,
        _: DateTime<Utc>,
    ) -> PortFuture<'_, Result<Option<PolicyStatistics>, StoreError>> {
        Box::pin(async { Ok(None) })
    }
}

/// Issued coupons in a list, with the store's rules (channel, activity, window, cap, per-user
/// limit), or a refusal the test scripts.
#[derive(Default)]
pub struct InMemoryCouponStore {
    pub coupons: Mutex<Vec<IssuedCoupon>>,
    pub calls: AtomicUsize,
    pub refuse_next: Mutex<Option<fn() -> IssueError>>,
}

impl InMemoryCouponStore {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl CouponStore for InMemoryCouponStore {
    fn issue<'a>(&'a self, command: IssueCommand<'a>) -> PortFuture<'a, Result<IssuedCoupon, IssueError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let outcome = (|| {
            if let Some(refusal) = lock(&self.refuse_next).take() {
                return Err(refusal());
            }
            command.policy.check_issuable(command.channel, command.issued_at)?;
            let mut coupons = lock(&self.coupons);
            let of_policy = coupons.iter().filter(|c| c.policy_id == command.policy.id);
            let held = of_policy.clone().filter(|c| c.user_id == command.user_id).count();
            if held >= usize::from(command.policy.max_issue_per_user) {
                return Err(IssueError::AlreadyIssued);
            }
            if command.policy.max_issue_count.is_some_and(|cap| of_policy.count() >= cap as usize) {
                return Err(NotIssuable::SoldOut.into());
            }
            let id = i64::try_from(coupons.len() + 1).unwrap_or(i64::MAX);
            let coupon = IssuedCoupon {
                id: CouponId::new(id).unwrap_or_else(|| panic!("coupon id {id}")),
                policy_id: command.policy.id,
                user_id: command.user_id,
                status: CouponStatus::Issued,
                issued_at: command.issued_at,
                expires_at: command.expires_at,
                reserved_at: None,
                used_at: None,
                reservation_id: None,
                order_id: None,
                discount_amount: None,
            };
            coupons.push(coupon.clone());
            Ok(coupon)
        })();
        Box::pin(async move { outcome })
    }
}

/// A gate that answers what the test says and records what it was told.
pub struct ScriptedGate {
    pub answer: Mutex<Result<GateDecision, ()>>,
    pub calls: Mutex<Vec<String>>,
    snapshot: Mutex<Option<SoldOutSnapshot>>,
    /// The mark to report; by default the snapshot's.
    mark: Mutex<Option<Result<Option<SoldOutMark>, ()>>>,
    units: Mutex<Option<GateUnits>>,
}

impl ScriptedGate {
    pub fn answering(answer: Result<GateDecision, ()>) -> Self {
        Self {
            answer: Mutex::new(answer),
            calls: Mutex::default(),
            snapshot: Mutex::default(),
            mark: Mutex::default(),
            units: Mutex::default(),
        }
    }

    pub fn units_as(&self, units: Option<GateUnits>) {
        *lock(&self.units) = units;
    }

    pub fn sold_out_as(&self, snapshot: Option<SoldOutSnapshot>) {
        *lock(&self.snapshot) = snapshot;
    }

    pub fn mark_as(&self, mark: Result<Option<SoldOutMark>, ()>) {
        *lock(&self.mark) = Some(mark);
    }

    pub fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }

    fn record(&self, call: String) {
        lock(&self.calls).push(call);
    }
}

impl StockGate for ScriptedGate {
    fn admit<'a>(
        &'a self,
        policy: &'a Policy,
        user: UserId,
    ) -> PortFuture<'a, Result<GateDecision, StoreError>> {
        self.record(format!("admit {} {user}", policy.id));
        let answer = lock(&self.answer).map_err(|()| StoreError::Unavailable("gate down".into()));
        Box::pin(async move { answer })
    }

    fn give_back(&self, policy: PolicyId, user: UserId) -> PortFuture<'_, Result<(), StoreError>> {
        self.record(format!("give_back {policy} {user}"));
        Box::pin(async { Ok(()) })
    }

    fn mark_sold_out(&self, policy: PolicyId) -> PortFuture<'_, Result<(), StoreError>> {
        self.record(format!("sold_out {policy}"));
        Box::pin(async { Ok(()) })
    }

    fn forget(&self, policy: PolicyId) -> PortFuture<'_, Result<(), StoreError>> {
        self.record(format!("forget {policy}"));
        Box::pin(async { Ok(()) })
    }

    fn sold_out_snapshot<'a>(
        &'a self,
        policy: &'a Policy,
    ) -> PortFuture<'a, Result<Option<SoldOutSnapshot>, StoreError>> {
        self.record(format!("snapshot {}", policy.id));
        let snapshot = lock(&self.snapshot).clone();
        Box::pin(async move { Ok(snapshot) })
    }

    fn sold_out_mark(&self, policy: PolicyId) -> PortFuture<'_, Result<Option<SoldOutMark>, StoreError>> {
        self.record(format!("mark {policy}"));
        let mark = lock(&self.mark)
            .clone()
            .unwrap_or_else(|| Ok(lock(&self.snapshot).as_ref().map(|s| s.mark.clone())))
            .map_err(|()| StoreError::Unavailable("gate down".into()));
        Box::pin(async move { mark })
    }

    fn units(&self, policy: PolicyId) -> PortFuture<'_, Result<Option<GateUnits>, StoreError>> {
        self.record(format!("units {policy}"));
        let units = *lock(&self.units);
        Box::pin(async move { Ok(units) })
    }
}

/// Runs a future to completion on the test thread (the fakes never wait).
pub fn block_on<F: Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}
