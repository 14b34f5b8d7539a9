//! The first-come gate reconciled with PostgreSQL (SPEC §10).
//!
//! The gate takes a unit before the store commits the coupon. A process that dies in between
//! (kill -9, OOM) leaves that unit taken in Redis with no coupon behind it: the gate sells out
//! while PostgreSQL still has stock, and would answer `COUPON_SOLD_OUT` for good. The audit
//! compares, for each gate this instance has seen sell out, the units the gate handed out with
//! the coupons PostgreSQL committed (the drift). A gate that is sold out while the store has
//! stock, with no coupon committed between two audits, has lost units rather than having requests
//! in flight: it is forgotten, and the next request rebuilds it from PostgreSQL's numbers (as
//! after a Redis flush; the gate only errs towards admitting, and the store refuses the extra).
//!
//! Audits run every [`AUDIT_EVERY`], so a lost unit is noticed within two of them after the gate
//! sells out; instances answering from their sold-out memo notice the rebuilt gate within the
//! memo's recheck (one second). A gate whose policy sold out in PostgreSQL too, or that ended,
//! is no longer watched.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::clock::Clock;
use crate::gate::StockGate;
use crate::id::PolicyId;
use crate::policy::DistributionType;
use crate::policy_store::PolicyStore;

/// How often the api-server audits the gates it watches.
pub const AUDIT_EVERY: Duration = Duration::from_secs(3);

/// What an audit found for one gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateDrift {
    pub policy: PolicyId,
    /// Units the gate handed out less the coupons PostgreSQL committed: requests in flight, and
    /// units lost by processes that died between a gate admit and its commit.
    pub units: i64,
    /// The gate was forgotten, to be rebuilt from PostgreSQL.
    pub reconciled: bool,
}

/// A watched gate, and the store's count when it was last seen sold out with stock left.
#[derive(Debug, Clone, Copy, Default)]
struct Watch {
    stalled_at: Option<u32>,
}

/// The gates this instance watches, and the audit that reconciles them.
pub struct GateAudit {
    policies: Arc<dyn PolicyStore>,
    gate: Arc<dyn StockGate>,
    clock: Arc<dyn Clock>,
    watched: Mutex<HashMap<PolicyId, Watch>>,
}

impl std::fmt::Debug for GateAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateAudit").finish_non_exhaustive()
    }
}

impl GateAudit {
    pub fn new(policies: Arc<dyn PolicyStore>, gate: Arc<dyn StockGate>, clock: Arc<dyn Clock>) -> Self {
        Self { policies, gate, clock, watched: Mutex::default() }
    }

    fn watched(&self) -> MutexGuard<'_, HashMap<PolicyId, Watch>> {
        self.watched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The gate of `policy` answered `COUPON_SOLD_OUT`: audit it until the store sells out too.
    pub fn watch(&self, policy: PolicyId) {
        self.watched().entry(policy).or_default();
    }

    /// Audits every watched gate once: its drift, and a reconciliation where units were lost.
    pub async fn audit(&self) -> Vec<GateDrift> {
        let ids: Vec<PolicyId> = self.watched().keys().copied().collect();
        let mut drifts = Vec::with_capacity(ids.len());
        for id in ids {
            match self.audit_one(id).await {
                Ok(Some(drift)) => drifts.push(drift),
                Ok(None) => {
                    self.watched().remove(&id);
                    drifts.push(GateDrift { policy: id, units: 0, reconciled: false });
                }
                Err(e) => tracing::warn!(policy.id = %id, error = %e, "cannot audit the stock gate"),
            }
        }
        drifts
    }

    /// `None` when the gate needs no more watching (policy gone, ended, or sold out in the store).
    async fn audit_one(&self, id: PolicyId) -> Result<Option<GateDrift>, crate::port::StoreError> {
        let Some(policy) = self.policies.get(id).await? else { return Ok(None) };
        let Some(cap) = policy.max_issue_count else { return Ok(None) };
        let live = policy.check_issuable(DistributionType::FirstCome, self.clock.now()).is_ok();
        let committed = policy.current_issue_count;
        if !live || committed >= cap {
            return Ok(None);
        }
        let Some(units) = self.gate.units(id).await? else { return Ok(None) };
        let drift = i64::from(units.cap.saturating_sub(units.stock)) - i64::from(committed);
        let stalled = units.stock == 0;
        let previous = self.watched().get(&id).and_then(|w| w.stalled_at);
        // Sold out in the gate, stock left in the store, and nothing committed since the last
        // audit: the missing units are lost, not in flight.
        if stalled && previous == Some(committed) {
            self.gate.forget(id).await?;
            tracing::warn!(policy.id = %id, drift, committed, cap, "stock gate lost units; rebuilt from PostgreSQL");
            self.watched().insert(id, Watch::default());
            return Ok(Some(GateDrift { policy: id, units: drift, reconciled: true }));
        }
        self.watched().insert(id, Watch { stalled_at: stalled.then_some(committed) });
        Ok(Some(GateDrift { policy: id, units: drift, reconciled: false }))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};

    use super::*;
    use crate::fakes::{InMemoryPolicyStore, ManualClock, ScriptedGate, block_on, policy};
    use crate::gate::{GateDecision, GateUnits};
    use crate::policy::Policy;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 10, 0, 0).single().expect("instant")
    }

    /// A first-come policy of cap 10 with `committed` coupons, and a gate holding `units`.
    fn audited(
        committed: u32,
        units: Option<GateUnits>,
    ) -> (GateAudit, Arc<ScriptedGate>, Arc<InMemoryPolicyStore>) {
        let mut p: Policy = policy(1, DistributionType::FirstCome, Some(10), now());
        p.current_issue_count = committed;
        let policies = Arc::new(InMemoryPolicyStore::with(vec![p]));
        let gate = Arc::new(ScriptedGate::answering(Ok(GateDecision::SoldOut)));
        gate.units_as(units);
        let audit = GateAudit::new(policies.clone(), gate.clone(), Arc::new(ManualClock::at(now())));
        audit.watch(PolicyId::new(1).expect("id"));
        (audit, gate, policies)
    }

    fn forgets(gate: &ScriptedGate) -> usize {
        gate.calls().iter().filter(|c| c.starts_with("forget")).count()
    }

    #[test]
    fn a_sold_out_gate_with_stock_left_and_no_progress_is_rebuilt_on_the_second_audit() {
        let (audit, gate, _) = audited(7, Some(GateUnits { cap: 10, stock: 0 }));
        let first = block_on(audit.audit());
        assert_eq!(first[0].units, 3);
        assert!(!first[0].reconciled, "the first sighting may be requests in flight");
        assert_eq!(forgets(&gate), 0);
        let second = block_on(audit.audit());
        assert!(second[0].reconciled);
        assert_eq!(forgets(&gate), 1);
    }

    #[test]
    fn progress_in_the_store_means_requests_in_flight() {
        let (audit, gate, policies) = audited(7, Some(GateUnits { cap: 10, stock: 0 }));
        block_on(audit.audit());
        policies.set_issued(PolicyId::new(1).expect("id"), 8);
        let second = block_on(audit.audit());
        assert_eq!((second[0].units, second[0].reconciled), (2, false));
        assert_eq!(forgets(&gate), 0);
    }

    #[test]
    fn a_gate_with_stock_or_a_policy_sold_out_in_the_store_is_left_alone() {
        let (audit, gate, _) = audited(7, Some(GateUnits { cap: 10, stock: 2 }));
        block_on(audit.audit());
        let again = block_on(audit.audit());
        assert_eq!((again[0].units, again[0].reconciled), (1, false), "one request in flight");
        assert_eq!(forgets(&gate), 0);

        let (audit, gate, _) = audited(10, Some(GateUnits { cap: 10, stock: 0 }));
        assert_eq!(block_on(audit.audit())[0].units, 0);
        assert!(block_on(audit.audit()).is_empty(), "no longer watched");
        assert_eq!(forgets(&gate), 0);
    }
}
