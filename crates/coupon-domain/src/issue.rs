//! Issuing coupons (SPEC §4.1–4.2): by code, by download, first-come, by admin (and by Kafka
//! event). A download goes, in order: the answer from memory for a first-come policy this
//! instance saw sell out, the abuse limits, the policy (a typed code counted as an attempt),
//! the issuing plan, the first-come gate, and the store, which decides in one transaction;
//! PostgreSQL is the arbiter of every rule.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::clock::Clock;
use crate::context::{Cause, EventContext, Origin};
use crate::coupon::{IssuedCoupon, expires_at};
use crate::gate::{GateDecision, StockGate};
use crate::id::{PolicyId, UserId};
use crate::limits::{CodeCaller, Guard, LimitRefusal, RateStatus};
use crate::policy::{CouponCode, DistributionType, NotIssuable, Policy, UniqueCode};
use crate::policy_store::PolicyStore;
use crate::port::{PortFuture, StoreError};
use crate::reconciliation::{GateAudit, GateDrift};
use crate::sold_out::SoldOutMemo;

/// How long an answer for a sold-out policy may come from memory before the gate is asked again.
const SOLD_OUT_RECHECK: chrono::Duration = chrono::Duration::seconds(1);

/// What the user asked for.
#[derive(Debug, Clone)]
pub enum IssueTarget {
    /// A typed coupon code (CODE policies).
    Code(CouponCode),
    /// A policy id (DOWNLOAD and FIRST_COME policies).
    Policy(PolicyId),
}

/// Whose a typed code is.
enum CodeOwner {
    Shared(Policy),
    Unique(Policy, UniqueCode),
}

/// Why no coupon was issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// `POLICY_NOT_FOUND`
    #[error("no coupon policy has this id")]
    PolicyNotFound,
    /// `COUPON_CODE_NOT_FOUND`
    #[error("no coupon has this code")]
    CodeNotFound,
    #[error(transparent)]
    NotIssuable(#[from] NotIssuable),
    /// `COUPON_ALREADY_ISSUED`
    #[error("the user already holds the maximum number of these coupons")]
    AlreadyIssued,
    /// `COUPON_ALREADY_ISSUED`: a unique code issues one coupon, once (SPEC §11.6).
    #[error("this code was already redeemed")]
    CodeRedeemed,
    /// `RATE_LIMITED` or `ACCESS_BLOCKED`.
    #[error(transparent)]
    Limited(#[from] LimitRefusal),
    /// `SERVICE_UNAVAILABLE`
    #[error("the coupon store is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<StoreError> for IssueError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => IssueError::Unavailable(m),
            StoreError::Unexpected(e) => IssueError::Unexpected(e),
        }
    }
}

/// One coupon to issue, decided by the store in one transaction.
#[derive(Debug, Clone)]
pub struct IssueCommand<'a> {
    /// The policy as read before the transaction; the store re-checks it under lock.
    pub policy: &'a Policy,
    pub channel: DistributionType,
    pub user_id: UserId,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub context: &'a EventContext,
    /// The unique code being redeemed (SPEC §11.6): marked redeemed in the issuing transaction.
    pub code: Option<&'a CouponCode>,
}

impl<'a> IssueCommand<'a> {
    /// The issuing plan every channel shares (HTTP downloads, direct issue, `coupon.issue-requested`):
    /// the policy must issue through `channel` at `now`, and the coupon expires at the end of its
    /// last valid day in the business time zone.
    ///
    /// # Errors
    /// Why the policy does not issue through `channel` now.
    pub fn plan(
        policy: &'a Policy,
        channel: DistributionType,
        user: UserId,
        now: DateTime<Utc>,
        zone: Tz,
        context: &'a EventContext,
    ) -> Result<Self, NotIssuable> {
        policy.check_issuable(channel, now)?;
        Ok(Self {
            policy,
            channel,
            user_id: user,
            issued_at: now,
            expires_at: expires_at(now, policy.valid_days, zone),
            context,
            code: None,
        })
    }
}

/// Persists issued coupons.
pub trait CouponStore: Send + Sync + 'static {
    /// In one transaction: takes the user's lowest free slot (≤ `max_issue_per_user`, else
    /// `AlreadyIssued`), marks the unique code redeemed by this coupon (else `CodeRedeemed`),
    /// appends `coupon.issued` to the outbox, and increments the policy's counter only while the
    /// policy is active, in its window, issuing through `channel` and under its cap (else the
    /// matching [`NotIssuable`]). Resolves after commit.
    fn issue<'a>(&'a self, command: IssueCommand<'a>) -> PortFuture<'a, Result<IssuedCoupon, IssueError>>;
}

/// A coupon just issued, with the policy it was issued under.
#[derive(Debug, Clone)]
pub struct Issued {
    pub coupon: IssuedCoupon,
    pub policy: Policy,
}

/// `POST /api/coupons/download`.
#[derive(Debug, Clone)]
pub struct Download {
    pub user: UserId,
    pub target: IssueTarget,
    /// The client's address, for the block of code guessers; only read for a code.
    pub address: Option<IpAddr>,
    pub cause: Cause,
}

/// A download's answer: the coupon, or why there is none, with where the caller's rate window
/// stands when the limiter counted the request.
#[derive(Debug)]
pub struct Downloaded {
    pub outcome: Result<Issued, IssueError>,
    pub rate: Option<RateStatus>,
}

/// The issuing use case.
#[derive(Clone)]
pub struct Issuing {
    policies: Arc<dyn PolicyStore>,
    coupons: Arc<dyn CouponStore>,
    gate: Arc<dyn StockGate>,
    guard: Guard,
    sold_out: Arc<SoldOutMemo>,
    audit: Arc<GateAudit>,
    clock: Arc<dyn Clock>,
    zone: Tz,
}

impl std::fmt::Debug for Issuing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuing").field("zone", &self.zone).finish_non_exhaustive()
    }
}

impl Issuing {
    pub fn new(
        policies: Arc<dyn PolicyStore>,
        coupons: Arc<dyn CouponStore>,
        gate: Arc<dyn StockGate>,
        guard: Guard,
        clock: Arc<dyn Clock>,
        zone: Tz,
    ) -> Self {
        let sold_out = Arc::new(SoldOutMemo::new(gate.clone(), clock.clone(), SOLD_OUT_RECHECK));
        let audit = Arc::new(GateAudit::new(policies.clone(), gate.clone(), clock.clone()));
        Self { policies, coupons, gate, guard, sold_out, audit, clock, zone }
    }

    /// Audits the gates this instance saw sell out against the store, rebuilding those that lost
    /// units (see [`GateAudit`]); the api-server runs it every [`crate::reconciliation::AUDIT_EVERY`].
    pub async fn audit_gates(&self) -> Vec<GateDrift> {
        self.audit.audit().await
    }

    /// `POST /api/coupons/download`: by code (CODE) or by policy id (DOWNLOAD, FIRST_COME).
    ///
    /// A sold-out first-come policy is answered before the rate limiter: the answer costs no
    /// shared resource, and it spares Redis the losers of a burst. Only codes can be guessed: other
    /// downloads take no code attempt.
    pub async fn download(&self, request: Download) -> Downloaded {
        let Download { user, target, address, cause } = request;
        if let Some(refusal) = self.known_refusal(user, &target).await {
            return Downloaded { outcome: Err(refusal), rate: None };
        }
        let rate = match self.guard.admit_issue(user).await {
            Ok(rate) => rate,
            Err(refusal) => return Downloaded { outcome: Err(refusal.into()), rate: None },
        };
        let outcome = match target {
            IssueTarget::Code(code) => {
                let caller = CodeCaller { user, address };
                let lookup = self.find_code(&code);
                match self.guard.code_attempt(caller, lookup, |found| matches!(found, Ok(None))).await {
                    Ok(Ok(Some(CodeOwner::Shared(policy)))) => {
                        self.issue_under(policy, DistributionType::Code, user, cause, None).await
                    }
                    Ok(Ok(Some(CodeOwner::Unique(policy, found)))) => {
                        if found.redeemed {
                            return Downloaded { outcome: Err(IssueError::CodeRedeemed), rate };
                        }
                        self.issue_under(policy, DistributionType::Code, user, cause, Some(&found.code)).await
                    }
                    Ok(Ok(None)) => Err(IssueError::CodeNotFound),
                    Ok(Err(e)) => Err(e.into()),
                    Err(refusal) => Err(refusal.into()),
                }
            }
            IssueTarget::Policy(id) => self.by_id(id, user, cause).await,
        };
        Downloaded { outcome, rate }
    }

    /// The policy of a typed code: a shared code, else a unique one (SPEC §11.6).
    async fn find_code(&self, code: &CouponCode) -> Result<Option<CodeOwner>, StoreError> {
        if let Some(policy) = self.policies.find_by_code(code).await? {
            return Ok(Some(CodeOwner::Shared(policy)));
        }
        let Some(found) = self.policies.find_unique_code(code).await? else {
            return Ok(None);
        };
        Ok(self.policies.get(found.policy).await?.map(|policy| CodeOwner::Unique(policy, found)))
    }

    async fn by_id(&self, id: PolicyId, user: UserId, cause: Cause) -> Result<Issued, IssueError> {
        let policy = self.policies.get(id).await?.ok_or(IssueError::PolicyNotFound)?;
        // Downloading by id is the DOWNLOAD and FIRST_COME channel; anything else refuses.
        let channel = match policy.distribution {
            DistributionType::FirstCome => DistributionType::FirstCome,
            _ => DistributionType::Download,
        };
        self.issue_under(policy, channel, user, cause, None).await
    }

    /// The refusal a download of `target` by `user` would get, when it is known without asking
    /// the gate or the store: the first-come policy sold out (see [`SoldOutMemo`]).
    async fn known_refusal(&self, user: UserId, target: &IssueTarget) -> Option<IssueError> {
        let IssueTarget::Policy(id) = target else { return None };
        // Only a policy this instance saw sell out can be answered; any other id costs nothing
        // here (an unknown id is not read before the rate limiter has counted the request).
        if !self.sold_out.knows(*id) {
            return None;
        }
        let policy = self.policies.get(*id).await.ok().flatten()?;
        policy.check_issuable(DistributionType::FirstCome, self.clock.now()).ok()?;
        match self.sold_out.refusal(&policy, user).await? {
            GateDecision::AlreadyHolding => Some(IssueError::AlreadyIssued),
            GateDecision::SoldOut => Some(NotIssuable::SoldOut.into()),
            GateDecision::Admitted => None,
        }
    }

    /// `POST /api/coupons/direct-issue`: one coupon for each distinct user of a DIRECT policy.
    /// Users are handled in the order given, each once; one user's failure does not stop the
    /// others.
    ///
    /// # Errors
    /// What concerns the whole request (SPEC §11.2): the policy does not exist, is not DIRECT,
    /// inactive or outside its window, or the store is unreachable before anything was issued.
    /// Per-user outcomes (already issued, sold out) are in the result.
    pub async fn direct(
        &self,
        policy_id: PolicyId,
        users: &[UserId],
        cause: &Cause,
    ) -> Result<Vec<(UserId, Result<IssuedCoupon, IssueError>)>, IssueError> {
        let policy = self.policies.get(policy_id).await?.ok_or(IssueError::PolicyNotFound)?;
        policy.check_issuable(DistributionType::Direct, self.clock.now())?;
        let mut seen = std::collections::HashSet::with_capacity(users.len());
        let mut outcomes = Vec::with_capacity(users.len());
        for &user in users {
            if !seen.insert(user) {
                continue;
            }
            let outcome = self
                .issue_under(policy.clone(), DistributionType::Direct, user, cause.clone(), None)
                .await
                .map(|issued| issued.coupon);
            match outcome {
                // The snapshot may be a second old: the store found, before anything was issued,
                // that the policy does not issue directly now. That concerns the whole request.
                Err(IssueError::NotIssuable(reason))
                    if outcomes.is_empty() && reason != NotIssuable::SoldOut =>
                {
                    return Err(reason.into());
                }
                outcome => outcomes.push((user, outcome)),
            }
        }
        Ok(outcomes)
    }

    async fn issue_under(
        &self,
        policy: Policy,
        channel: DistributionType,
        user: UserId,
        cause: Cause,
        code: Option<&CouponCode>,
    ) -> Result<Issued, IssueError> {
        let now = self.clock.now();
        let context = cause.context(now, Origin::Service);
        let mut command = IssueCommand::plan(&policy, channel, user, now, self.zone, &context)?;
        command.code = code;
        let gated = channel == DistributionType::FirstCome && self.pass_gate(&policy, user).await?;
        let outcome = self.coupons.issue(command).await;
        if gated {
            self.settle_gate(&policy, user, &outcome).await;
        }
        outcome.map(|coupon| Issued { coupon, policy })
    }

    /// Whether the gate admitted the user (`false`: the gate is down and the store decides alone).
    async fn pass_gate(&self, policy: &Policy, user: UserId) -> Result<bool, IssueError> {
        match self.gate.admit(policy, user).await {
            Ok(GateDecision::Admitted) => Ok(true),
            Ok(GateDecision::SoldOut) => {
                self.audit.watch(policy.id);
                self.sold_out.note_sold_out(policy).await;
                Err(NotIssuable::SoldOut.into())
            }
            Ok(GateDecision::AlreadyHolding) => Err(IssueError::AlreadyIssued),
            Err(e) => {
                tracing::warn!(policy.id = %policy.id, error = %e, "stock gate unavailable; the store decides alone");
                Ok(false)
            }
        }
    }

    /// Keeps the gate in step with what the store decided for an admitted request.
    async fn settle_gate(&self, policy: &Policy, user: UserId, outcome: &Result<IssuedCoupon, IssueError>) {
        let settled = match outcome {
            Ok(_) => return,
            Err(IssueError::NotIssuable(NotIssuable::SoldOut)) => self.gate.mark_sold_out(policy.id).await,
            Err(_) => self.gate.give_back(policy.id, user).await,
        };
        if let Err(e) = settled {
            tracing::warn!(policy.id = %policy.id, error = %e, "cannot update the stock gate");
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::gate::{SoldOutMark, SoldOutSnapshot};
    use chrono::TimeZone;

    use super::*;
    use crate::fakes::{
        InMemoryCouponStore, InMemoryPolicyStore, ManualClock, ScriptedGate, block_on, policy,
    };
    use crate::limits::{CodeAttempt, RateLimiter, RateVerdict};

    struct Fixture {
        coupons: Arc<InMemoryCouponStore>,
        gate: Arc<ScriptedGate>,
        issuing: Issuing,
    }

    fn fixture(policies: Vec<Policy>, gate: Result<GateDecision, ()>) -> Fixture {
        let now = Utc.with_ymd_and_hms(2024, 1, 1, 10, 0, 0).single().expect("instant");
        let coupons = Arc::new(InMemoryCouponStore::default());
        let gate = Arc::new(ScriptedGate::answering(gate));
        let issuing = Issuing::new(
            Arc::new(InMemoryPolicyStore::with(policies)),
            coupons.clone(),
            gate.clone(),
            Guard::default(),
            Arc::new(ManualClock::at(now)),
            Tz::UTC,
        );
        Fixture { coupons, gate, issuing }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 10, 0, 0).single().expect("instant")
    }

    fn user(n: i64) -> UserId {
        UserId::new(n).expect("user")
    }

    fn download(
        issuing: &Issuing,
        user: UserId,
        target: IssueTarget,
        correlation_id: String,
    ) -> Result<Issued, IssueError> {
        let request = Download { user, target, address: None, cause: correlation_id.into() };
        block_on(issuing.download(request)).outcome
    }

    fn by_id(id: i64) -> IssueTarget {
        IssueTarget::Policy(PolicyId::new(id).expect("id"))
    }

    /// The answer from memory is only for policies this instance saw sell out: an unknown id
    /// costs the store nothing before the rate limiter has counted the request.
    #[test]
    fn only_a_policy_seen_sold_out_is_looked_up_before_the_rate_limiter() {
        let policies =
            Arc::new(InMemoryPolicyStore::with(vec![policy(1, DistributionType::FirstCome, Some(1), now())]));
        let gate = Arc::new(ScriptedGate::answering(Ok(GateDecision::Admitted)));
        let issuing = Issuing::new(
            policies.clone(),
            Arc::new(InMemoryCouponStore::default()),
            gate,
            Guard::default(),
            Arc::new(ManualClock::at(now())),
            Tz::UTC,
        );
        for id in [1, 999] {
            assert!(block_on(issuing.known_refusal(user(7), &by_id(id))).is_none());
        }
        assert_eq!(policies.reads(), 0);
    }

    #[test]
    fn a_download_is_issued_with_its_expiry_and_the_policy() {
        let f = fixture(vec![policy(1, DistributionType::Download, None, now())], Ok(GateDecision::Admitted));
        let issued = download(&f.issuing, user(7), by_id(1), "corr".into()).expect("issued");
        assert_eq!(issued.coupon.user_id, user(7));
        assert_eq!(issued.policy.id.get(), 1);
        assert_eq!(
            issued.coupon.expires_at,
            Utc.with_ymd_and_hms(2024, 1, 31, 23, 59, 59).single().expect("instant")
        );
        assert!(f.gate.calls().is_empty(), "only FIRST_COME goes through the gate");
    }

    #[test]
    fn the_gate_turns_losers_away_without_touching_the_store() {
        for (answer, expected) in
            [(GateDecision::SoldOut, "SoldOut"), (GateDecision::AlreadyHolding, "AlreadyIssued")]
        {
            let f = fixture(vec![policy(1, DistributionType::FirstCome, Some(10), now())], Ok(answer));
            let refused = download(&f.issuing, user(7), by_id(1), "corr".into()).expect_err("refused");
            assert!(format!("{refused:?}").contains(expected), "{refused:?}");
            assert_eq!(f.coupons.calls(), 0);
        }
    }

    #[test]
    fn once_the_gate_sold_out_losers_are_answered_from_memory() {
        let f =
            fixture(vec![policy(1, DistributionType::FirstCome, Some(1), now())], Ok(GateDecision::SoldOut));
        f.gate.sold_out_as(Some(SoldOutSnapshot { mark: SoldOutMark("m".into()), holders: vec![user(7)] }));
        assert!(block_on(f.issuing.known_refusal(user(8), &by_id(1))).is_none(), "not known yet");
        assert!(download(&f.issuing, user(8), by_id(1), "corr".into()).is_err());
        let refusal = |u| block_on(f.issuing.known_refusal(user(u), &by_id(1))).map(|e| format!("{e:?}"));
        assert_eq!(refusal(8).as_deref(), Some("NotIssuable(SoldOut)"));
        assert_eq!(refusal(7).as_deref(), Some("AlreadyIssued"));
        assert_eq!(f.gate.calls(), ["admit 1 8", "snapshot 1"]);
        assert_eq!(f.coupons.calls(), 0);
    }

    #[test]
    fn a_gate_that_is_down_leaves_the_decision_to_the_store() {
        let f = fixture(vec![policy(1, DistributionType::FirstCome, Some(10), now())], Err(()));
        assert!(download(&f.issuing, user(7), by_id(1), "corr".into()).is_ok());
        assert_eq!(f.coupons.calls(), 1);
        assert_eq!(f.gate.calls(), ["admit 1 7"], "nothing to settle with a gate that is down");
    }

    #[test]
    fn the_gate_follows_what_the_store_decided() {
        let f = fixture(
            vec![policy(1, DistributionType::FirstCome, Some(10), now())],
            Ok(GateDecision::Admitted),
        );
        *f.coupons.refuse_next.lock().expect("lock") = Some(|| NotIssuable::SoldOut.into());
        assert!(download(&f.issuing, user(7), by_id(1), "corr".into()).is_err());
        *f.coupons.refuse_next.lock().expect("lock") = Some(|| IssueError::AlreadyIssued);
        assert!(download(&f.issuing, user(8), by_id(1), "corr".into()).is_err());
        assert_eq!(f.gate.calls(), ["admit 1 7", "sold_out 1", "admit 1 8", "give_back 1 8"]);
    }

    #[test]
    fn each_channel_issues_only_its_own_policies() {
        let code = policy(1, DistributionType::Code, None, now());
        let code_value = code.code.clone().expect("code");
        let f = fixture(
            vec![
                code,
                policy(2, DistributionType::Direct, None, now()),
                policy(3, DistributionType::Download, None, now()),
            ],
            Ok(GateDecision::Admitted),
        );
        let wrong = |target| {
            matches!(
                download(&f.issuing, user(7), target, "corr".into()),
                Err(IssueError::NotIssuable(NotIssuable::WrongChannel))
            )
        };
        assert!(wrong(by_id(1)), "a CODE policy needs its code");
        assert!(wrong(by_id(2)), "a DIRECT policy is issued by admins");
        assert!(download(&f.issuing, user(7), IssueTarget::Code(code_value), "corr".into()).is_ok());
        assert!(matches!(
            download(
                &f.issuing,
                user(7),
                IssueTarget::Code(CouponCode::parse("NONE").expect("code")),
                "c".into()
            ),
            Err(IssueError::CodeNotFound)
        ));
        assert!(matches!(
            download(&f.issuing, user(7), by_id(9), "c".into()),
            Err(IssueError::PolicyNotFound)
        ));
    }

    #[test]
    fn direct_issue_handles_each_user_once_and_reports_each_outcome() {
        let f =
            fixture(vec![policy(1, DistributionType::Direct, Some(2), now())], Ok(GateDecision::Admitted));
        let users = [user(1), user(2), user(1), user(3)];
        let outcomes =
            block_on(f.issuing.direct(PolicyId::new(1).expect("id"), &users, &"corr".into())).expect("ran");
        let summary: Vec<(i64, bool)> = outcomes.iter().map(|(u, r)| (u.get(), r.is_ok())).collect();
        assert_eq!(summary, [(1, true), (2, true), (3, false)]);
        assert!(matches!(outcomes[2].1, Err(IssueError::NotIssuable(NotIssuable::SoldOut))));
        assert!(matches!(
            block_on(f.issuing.direct(PolicyId::new(5).expect("id"), &users, &"corr".into())),
            Err(IssueError::PolicyNotFound)
        ));
    }

    #[test]
    fn direct_issue_to_a_policy_that_does_not_issue_directly_now_refuses_the_request() {
        let mut inactive = policy(2, DistributionType::Direct, None, now());
        inactive.is_active = false;
        let f = fixture(
            vec![policy(1, DistributionType::Download, None, now()), inactive],
            Ok(GateDecision::Admitted),
        );
        let direct =
            |id| block_on(f.issuing.direct(PolicyId::new(id).expect("id"), &[user(1)], &"corr".into()));
        assert!(matches!(direct(1), Err(IssueError::NotIssuable(NotIssuable::WrongChannel))));
        assert!(matches!(direct(2), Err(IssueError::NotIssuable(NotIssuable::Inactive))));
        assert_eq!(f.coupons.calls(), 0, "nothing reached the store");
    }

    /// What the limiter was asked, and what it answers.
    #[derive(Default)]
    struct Limiter {
        limited: bool,
        blocked: bool,
        settled: std::sync::Mutex<Vec<bool>>,
    }

    impl RateLimiter for Limiter {
        fn hit_issue(&self, _user: UserId) -> PortFuture<'_, Result<RateVerdict, StoreError>> {
            let status =
                RateStatus { limit: 10, remaining: 3, reset_after: std::time::Duration::from_secs(60) };
            let verdict =
                if self.limited { RateVerdict::Limited(status) } else { RateVerdict::Allowed(status) };
            Box::pin(async move { Ok(verdict) })
        }

        fn hit_validate(&self, _user: UserId) -> PortFuture<'_, Result<RateVerdict, StoreError>> {
            Box::pin(async { Err(StoreError::Unavailable("not used".into())) })
        }

        fn take_code_attempt(&self, _caller: CodeCaller) -> PortFuture<'_, Result<CodeAttempt, StoreError>> {
            let attempt = if self.blocked { CodeAttempt::Blocked } else { CodeAttempt::Taken };
            Box::pin(async move { Ok(attempt) })
        }

        fn settle_code_attempt(
            &self,
            _caller: CodeCaller,
            unknown: bool,
        ) -> PortFuture<'_, Result<(), StoreError>> {
            self.settled.lock().expect("settled").push(unknown);
            Box::pin(async { Ok(()) })
        }
    }

    fn guarded(limiter: Arc<Limiter>) -> (Issuing, Arc<InMemoryCouponStore>) {
        let coupons = Arc::new(InMemoryCouponStore::default());
        let policies = vec![
            policy(1, DistributionType::Code, None, now()),
            policy(2, DistributionType::Download, None, now()),
        ];
        let issuing = Issuing::new(
            Arc::new(InMemoryPolicyStore::with(policies)),
            coupons.clone(),
            Arc::new(ScriptedGate::answering(Ok(GateDecision::Admitted))),
            Guard::new(Some(limiter)),
            Arc::new(ManualClock::at(now())),
            Tz::UTC,
        );
        (issuing, coupons)
    }

    #[test]
    fn a_download_is_counted_and_a_typed_code_is_one_attempt_settled_by_what_it_found() {
        let limiter = Arc::new(Limiter::default());
        let (issuing, _) = guarded(limiter.clone());
        let code = |c: &str| IssueTarget::Code(CouponCode::parse(c).expect("code"));
        let downloaded = block_on(issuing.download(Download {
            user: user(7),
            target: code("CODE1"),
            address: None,
            cause: "c".into(),
        }));
        assert!(downloaded.outcome.is_ok());
        assert_eq!(downloaded.rate.map(|r| r.remaining), Some(3), "the window's status comes back");
        assert!(matches!(
            download(&issuing, user(8), code("NOPE"), "c".into()),
            Err(IssueError::CodeNotFound)
        ));
        assert!(download(&issuing, user(9), by_id(2), "c".into()).is_ok());
        assert_eq!(
            *limiter.settled.lock().expect("settled"),
            vec![false, true],
            "a download by id takes no attempt"
        );
    }

    #[test]
    fn a_limited_or_blocked_caller_is_turned_away_before_anything_is_issued() {
        let (issuing, coupons) = guarded(Arc::new(Limiter { limited: true, ..Limiter::default() }));
        assert!(matches!(
            download(&issuing, user(7), by_id(2), "c".into()),
            Err(IssueError::Limited(LimitRefusal::RateLimited(_)))
        ));
        let limiter = Arc::new(Limiter { blocked: true, ..Limiter::default() });
        let (blocked, _) = guarded(limiter.clone());
        let code = IssueTarget::Code(CouponCode::parse("CODE1").expect("code"));
        assert!(matches!(
            download(&blocked, user(7), code, "c".into()),
            Err(IssueError::Limited(LimitRefusal::AccessBlocked))
        ));
        assert!(limiter.settled.lock().expect("settled").is_empty(), "a refused attempt is not settled");
        assert_eq!(coupons.calls(), 0);
    }
}
