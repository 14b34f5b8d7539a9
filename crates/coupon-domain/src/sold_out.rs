//! Answers for sold-out first-come policies from memory (issue 6).
//!
//! Once a campaign's stock is gone, almost every request that follows is a loser. Each of them
//! would cost a rate-limit and a gate round trip to Redis only to hear `COUPON_SOLD_OUT`. The memo
//! keeps, per policy, what the gate said when it sold out: who holds their limit (they hear
//! `COUPON_ALREADY_ISSUED`, as the gate would tell them) and the gate's [`SoldOutMark`].
//!
//! How stale an answer can be: the memo re-reads the mark at most every `recheck_after` (one
//! request pays that round trip; the others keep answering) and is dropped when the mark moved,
//! the stock key is gone, or the policy snapshot shows another cap or per-user limit. A sold-out
//! gate's holders change only when a unit comes back or the cap is raised, and both move the mark.
//! So after a give-back or a cap raise on any instance, an instance answers from its memo for at
//! most about two `recheck_after` more (one if the recheck that notices is not abandoned).
//!
//! Memory: one entry per sold-out policy with its holder set, so a policy whose cap exceeds
//! [`MAX_HOLDERS`] is never memoised.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Duration, Utc};

use crate::clock::Clock;
use crate::gate::{GateDecision, SoldOutMark, StockGate};
use crate::id::{PolicyId, UserId};
use crate::policy::Policy;

/// Policies with a larger cap are not memoised (their holder set would be too large to keep).
pub const MAX_HOLDERS: u32 = 1_000_000;

/// Sold-out first-come policies this instance knows of.
pub struct SoldOutMemo {
    gate: Arc<dyn StockGate>,
    clock: Arc<dyn Clock>,
    recheck_after: Duration,
    entries: Mutex<HashMap<PolicyId, Entry>>,
}

impl std::fmt::Debug for SoldOutMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoldOutMemo").field("recheck_after", &self.recheck_after).finish_non_exhaustive()
    }
}

enum Entry {
    /// One request is reading the gate's snapshot (since then). Others go on to the gate; a load
    /// abandoned by a dropped request gives way to a new one after `recheck_after`.
    Loading(DateTime<Utc>),
    Known(Known),
}

struct Known {
    /// The policy's cap and per-user limit the snapshot answers for.
    cap: Option<u32>,
    per_user: u16,
    mark: SoldOutMark,
    holders: HashSet<UserId>,
    /// The mark was last confirmed (or a recheck started) then.
    checked_at: DateTime<Utc>,
}

impl SoldOutMemo {
    pub fn new(gate: Arc<dyn StockGate>, clock: Arc<dyn Clock>, recheck_after: Duration) -> Self {
        Self { gate, clock, recheck_after, entries: Mutex::default() }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<PolicyId, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the memo holds (or is loading) an entry for `policy`: only then can it answer.
    pub fn knows(&self, policy: PolicyId) -> bool {
        self.entries().contains_key(&policy)
    }

    /// The refusal the gate would give `user` for the sold-out `policy` (`SoldOut`, or
    /// `AlreadyHolding` for a holder), or `None` when the memo does not know the policy as sold out
    /// (the caller asks the gate).
    pub async fn refusal(&self, policy: &Policy, user: UserId) -> Option<GateDecision> {
        let now = self.clock.now();
        let (answer, mark) = {
            let mut entries = self.entries();
            let Some(Entry::Known(known)) = entries.get_mut(&policy.id) else { return None };
            if known.cap != policy.max_issue_count || known.per_user != policy.max_issue_per_user {
                entries.remove(&policy.id);
                return None;
            }
            let answer = if known.holders.contains(&user) {
                GateDecision::AlreadyHolding
            } else {
                GateDecision::SoldOut
            };
            if now - known.checked_at < self.recheck_after {
                return Some(answer);
            }
            // This request rechecks; pushing `checked_at` first keeps the others answering, and
            // bounds the staleness should this request be dropped before it finishes.
            known.checked_at = now;
            (answer, known.mark.clone())
        };
        let current = self.gate.sold_out_mark(policy.id).await;
        let mut entries = self.entries();
        let ours = matches!(entries.get(&policy.id), Some(Entry::Known(k)) if k.mark == mark);
        match current {
            Ok(Some(current)) if current == mark => Some(answer),
            outcome => {
                if let Err(e) = outcome {
                    tracing::warn!(policy.id = %policy.id, error = %e, "cannot recheck a sold-out policy; asking the gate again");
                }
                if ours {
                    entries.remove(&policy.id);
                }
                None
            }
        }
    }

    /// The gate just answered `COUPON_SOLD_OUT` for `policy`: remember its holders and mark.
    pub async fn note_sold_out(&self, policy: &Policy) {
        if policy.max_issue_count.is_none_or(|cap| cap > MAX_HOLDERS) {
            return;
        }
        let started = self.clock.now();
        {
            let mut entries = self.entries();
            match entries.get(&policy.id) {
                Some(Entry::Known(_)) => return,
                Some(Entry::Loading(since)) if started - *since < self.recheck_after => return,
                _ => {}
            }
            entries.insert(policy.id, Entry::Loading(started));
        }
        let snapshot = self.gate.sold_out_snapshot(policy).await;
        let mut entries = self.entries();
        if !matches!(entries.get(&policy.id), Some(Entry::Loading(since)) if *since == started) {
            return;
        }
        match snapshot {
            Ok(Some(snapshot)) => {
                entries.insert(
                    policy.id,
                    Entry::Known(Known {
                        cap: policy.max_issue_count,
                        per_user: policy.max_issue_per_user,
                        mark: snapshot.mark,
                        holders: snapshot.holders.into_iter().collect(),
                        checked_at: self.clock.now(),
                    }),
                );
            }
            Ok(None) => {
                entries.remove(&policy.id);
            }
            Err(e) => {
                tracing::warn!(policy.id = %policy.id, error = %e, "cannot read the sold-out gate");
                entries.remove(&policy.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::fakes::{ManualClock, ScriptedGate, block_on, policy};
    use crate::gate::SoldOutSnapshot;
    use crate::policy::DistributionType;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 10, 0, 0).single().expect("instant")
    }

    fn user(n: i64) -> UserId {
        UserId::new(n).expect("user")
    }

    fn mark(s: &str) -> SoldOutMark {
        SoldOutMark(s.into())
    }

    struct Fixture {
        gate: Arc<ScriptedGate>,
        clock: Arc<ManualClock>,
        memo: SoldOutMemo,
        policy: Policy,
    }

    /// A memo over a gate that sold out policy 1 (cap 2) to users 1 and 2 under mark "a".
    fn sold_out() -> Fixture {
        let gate = Arc::new(ScriptedGate::answering(Ok(GateDecision::SoldOut)));
        gate.sold_out_as(Some(SoldOutSnapshot { mark: mark("a"), holders: vec![user(1), user(2)] }));
        let clock = Arc::new(ManualClock::at(now()));
        let memo = SoldOutMemo::new(gate.clone(), clock.clone(), Duration::seconds(1));
        let policy = policy(1, DistributionType::FirstCome, Some(2), now());
        block_on(memo.note_sold_out(&policy));
        Fixture { gate, clock, memo, policy }
    }

    fn answer(f: &Fixture, policy: &Policy, n: i64) -> Option<String> {
        block_on(f.memo.refusal(policy, user(n))).map(|e| format!("{e:?}"))
    }

    #[test]
    fn a_sold_out_policy_is_answered_from_memory_holders_first() {
        let f = sold_out();
        assert_eq!(f.gate.calls(), ["snapshot 1"]);
        for _ in 0..3 {
            assert_eq!(answer(&f, &f.policy, 1).as_deref(), Some("AlreadyHolding"));
            assert_eq!(answer(&f, &f.policy, 3).as_deref(), Some("SoldOut"));
        }
        assert_eq!(f.gate.calls(), ["snapshot 1"], "no gate call within the recheck interval");
        block_on(f.memo.note_sold_out(&f.policy));
        assert_eq!(f.gate.calls(), ["snapshot 1"], "a known policy is not loaded twice");
    }

    #[test]
    fn after_the_interval_one_recheck_keeps_the_memo_while_the_mark_holds() {
        let f = sold_out();
        f.clock.advance(Duration::milliseconds(1000));
        assert!(answer(&f, &f.policy, 3).is_some());
        assert!(answer(&f, &f.policy, 4).is_some());
        assert_eq!(f.gate.calls(), ["snapshot 1", "mark 1"]);
    }

    #[test]
    fn a_moved_mark_or_a_gate_that_is_down_drops_the_memo() {
        for moved in [Ok(Some(mark("b"))), Ok(None), Err(())] {
            let f = sold_out();
            f.gate.mark_as(moved);
            f.clock.advance(Duration::seconds(2));
            assert_eq!(answer(&f, &f.policy, 3), None);
            assert_eq!(answer(&f, &f.policy, 3), None, "dropped, not rechecked again");
            assert_eq!(f.gate.calls(), ["snapshot 1", "mark 1"]);
        }
    }

    #[test]
    fn another_cap_or_per_user_limit_in_the_snapshot_drops_the_memo() {
        let f = sold_out();
        let raised = Policy { max_issue_count: Some(3), ..f.policy.clone() };
        assert_eq!(answer(&f, &raised, 3), None);
        assert_eq!(answer(&f, &f.policy, 3), None);

        let f = sold_out();
        let two_each = Policy { max_issue_per_user: 2, ..f.policy.clone() };
        assert_eq!(answer(&f, &two_each, 1), None);
    }

    #[test]
    fn only_a_sold_out_snapshot_of_a_capped_policy_is_kept() {
        let f = sold_out();
        let unlimited =
            Policy { id: PolicyId::new(2).expect("id"), max_issue_count: None, ..f.policy.clone() };
        block_on(f.memo.note_sold_out(&unlimited));
        let huge = Policy {
            id: PolicyId::new(3).expect("id"),
            max_issue_count: Some(MAX_HOLDERS + 1),
            ..f.policy.clone()
        };
        block_on(f.memo.note_sold_out(&huge));
        assert_eq!(f.gate.calls(), ["snapshot 1"]);

        f.gate.sold_out_as(None);
        let refilled = Policy { id: PolicyId::new(4).expect("id"), ..f.policy.clone() };
        block_on(f.memo.note_sold_out(&refilled));
        assert_eq!(answer(&f, &refilled, 3), None, "stock came back before the snapshot");
    }
}
