//! `StockGate` on Redis: keeps the losers of a first-come burst off PostgreSQL.
//!
//! Per policy, a stock counter and a hash of holders, both under one hash tag (`{policy id}`) so
//! one script touches one cluster slot. The gate is an accelerator: PostgreSQL still decides every
//! issue, the gate is rebuilt from PostgreSQL's numbers when it is empty (new, expired, flushed),
//! and a gate that is down makes the use case fall back to PostgreSQL alone. The admits of one
//! policy that wait on a thread are decided by one script run ([`crate::batch`]).

use coupon_domain::clock::{Clock, SystemClock};
use std::sync::Arc;
use std::time::Duration;

use coupon_domain::gate::{GateDecision, GateUnits, SoldOutMark, SoldOutSnapshot, StockGate};
use coupon_domain::id::{PolicyId, UserId};
use coupon_domain::policy::Policy;
use coupon_domain::port::{PortFuture, StoreError};
use redis::Script;

use crate::batch::{Batch, Batcher};
use crate::pool::{RedisError, RedisPool};

/// Gate keys outlive the issuance window by this much, then expire by themselves.
const AFTER_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Holders read per HSCAN step: each step is short, so reading 100,000 holders never blocks Redis
/// for long (one Lua pass over 100,000 holders took about 160 ms, over 1,000,000 1.6 s).
const HOLDERS_PAGE: usize = 1000;

/// The first-come gate in Redis.
#[derive(Debug, Clone)]
pub struct RedisStockGate {
    core: Arc<GateCore>,
    /// Concurrent admits of one policy go to Redis together (see [`crate::batch`]).
    admits: Batcher<GateCore>,
}

/// The scripts and keys of the gate.
#[derive(Debug)]
struct GateCore {
    pool: RedisPool,
    admit: Script,
    give_back: Script,
    sold_out: Script,
}

/// One request for a unit, with what its policy snapshot says about the gate.
struct Admission {
    user: UserId,
    version: i64,
    per_user: u16,
    initial: i64,
    ttl: u64,
    cap: i64,
}

impl RedisStockGate {
    pub fn new(pool: RedisPool) -> Self {
        let core = Arc::new(GateCore {
            pool,
            admit: Script::new(include_str!("lua/gate_admit.lua")),
            give_back: Script::new(include_str!("lua/gate_give_back.lua")),
            sold_out: Script::new(include_str!("lua/gate_sold_out.lua")),
        });
        Self { admits: Batcher::new(core.clone()), core }
    }
}

impl GateCore {
    fn keys(&self, policy: PolicyId) -> (String, String) {
        (
            self.pool.key(&format!("gate:{{{policy}}}:stock")),
            self.pool.key(&format!("gate:{{{policy}}}:holders")),
        )
    }

    fn cap_key(&self, policy: PolicyId) -> String {
        self.pool.key(&format!("gate:{{{policy}}}:cap"))
    }

    fn returns_key(&self, policy: PolicyId) -> String {
        self.pool.key(&format!("gate:{{{policy}}}:returns"))
    }

    async fn give_back(&self, policy: PolicyId, user: UserId) -> Result<(), StoreError> {
        let (stock, holders) = self.keys(policy);
        let mut invocation = self.give_back.key(stock);
        invocation.key(holders).key(self.returns_key(policy)).arg(user.get());
        let _: i64 = self.pool.invoke(&invocation).await.map_err(unavailable)?;
        Ok(())
    }

    /// Runs `gate_sold_out.lua`: the mark, or `None` unless the stock is 0.
    async fn sold_out_mark_of(&self, policy: PolicyId) -> Result<Option<SoldOutMark>, StoreError> {
        let (stock, _) = self.keys(policy);
        let mut invocation = self.sold_out.key(stock);
        invocation.key(self.cap_key(policy)).key(self.returns_key(policy));
        let mark: Option<String> = self.pool.invoke(&invocation).await.map_err(unavailable)?;
        Ok(mark.map(SoldOutMark))
    }

    /// The users holding `per_user` units, read in [`HOLDERS_PAGE`] steps. A user may appear twice
    /// (HSCAN's guarantee is only that none present throughout is missed).
    async fn holders_at_limit(&self, policy: PolicyId, per_user: u16) -> Result<Vec<UserId>, StoreError> {
        let (_, holders_key) = self.keys(policy);
        let mut holders = Vec::new();
        let mut cursor = 0_u64;
        loop {
            let mut cmd = redis::cmd("HSCAN");
            cmd.arg(&holders_key).arg(cursor).arg("COUNT").arg(HOLDERS_PAGE);
            let (next, page): (u64, Vec<String>) = self.pool.query(&cmd).await.map_err(unavailable)?;
            for pair in page.chunks_exact(2) {
                let held: u16 = pair[1].parse().unwrap_or(0);
                if held >= per_user {
                    let user = pair[0].parse().ok().and_then(UserId::new).ok_or_else(|| {
                        StoreError::Unexpected(anyhow::anyhow!("a gate holder is not a user id"))
                    })?;
                    holders.push(user);
                }
            }
            if next == 0 {
                return Ok(holders);
            }
            cursor = next;
        }
    }
}

/// The admits of one policy, decided by one run of `gate_admit.lua`.
impl Batch for GateCore {
    const NAME: &'static str = "gate_admit";
    type Key = PolicyId;
    type Item = Admission;
    type Answer = GateDecision;

    async fn run(&self, policy: PolicyId, items: &[&Admission]) -> Result<Vec<GateDecision>, RedisError> {
        // The newest policy snapshot of the batch speaks for the gate (later ones win a tie).
        let Some(newest) = items.iter().max_by_key(|item| item.version) else { return Ok(Vec::new()) };
        let (stock, holders) = self.keys(policy);
        let mut invocation = self.admit.key(stock);
        invocation
            .key(holders)
            .key(self.cap_key(policy))
            .arg(newest.per_user)
            .arg(newest.initial)
            .arg(newest.ttl)
            .arg(newest.cap);
        for item in items {
            invocation.arg(item.user.get());
        }
        let answers: Vec<i64> = self.pool.invoke(&invocation).await?;
        answers
            .into_iter()
            .map(|answer| match answer {
                0 => Ok(GateDecision::Admitted),
                1 => Ok(GateDecision::SoldOut),
                2 => Ok(GateDecision::AlreadyHolding),
                other => Err(RedisError::Reply(format!("gate script answered {other}"))),
            })
            .collect()
    }

    async fn unclaimed(&self, policy: PolicyId, item: Admission, answer: GateDecision) {
        if answer != GateDecision::Admitted {
            return;
        }
        // Nobody will take this unit to PostgreSQL: it goes back to the stock.
        if let Err(e) = self.give_back(policy, item.user).await {
            tracing::warn!(policy.id = %policy, error = %e, "cannot give back the unit of a request that left");
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl StockGate for RedisStockGate {
    fn admit<'a>(
        &'a self,
        policy: &'a Policy,
        user: UserId,
    ) -> PortFuture<'a, Result<GateDecision, StoreError>> {
        Box::pin(async move {
            let ttl = (policy.window.until() - SystemClock.now()).num_seconds().max(0) as u64
                + AFTER_WINDOW.as_secs();
            let admission = Admission {
                user,
                version: policy.version,
                per_user: policy.max_issue_per_user,
                initial: policy.remaining().map_or(-1, i64::from),
                ttl,
                cap: policy.max_issue_count.map_or(-1, i64::from),
            };
            self.admits.submit(policy.id, admission).await.map_err(unavailable)
        })
    }

    fn give_back(&self, policy: PolicyId, user: UserId) -> PortFuture<'_, Result<(), StoreError>> {
        Box::pin(self.core.give_back(policy, user))
    }

    fn mark_sold_out(&self, policy: PolicyId) -> PortFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let (stock, _) = self.core.keys(policy);
            // XX: only an existing gate; KEEPTTL: it still expires with the campaign.
            let mut cmd = redis::cmd("SET");
            cmd.arg(stock).arg(0).arg("XX").arg("KEEPTTL");
            let _: Option<String> = self.core.pool.query(&cmd).await.map_err(unavailable)?;
            Ok(())
        })
    }

    fn forget(&self, policy: PolicyId) -> PortFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let (stock, holders) = self.core.keys(policy);
            let mut cmd = redis::cmd("DEL");
            cmd.arg(stock).arg(holders).arg(self.core.cap_key(policy)).arg(self.core.returns_key(policy));
            let _: i64 = self.core.pool.query(&cmd).await.map_err(unavailable)?;
            Ok(())
        })
    }

    fn sold_out_snapshot<'a>(
        &'a self,
        policy: &'a Policy,
    ) -> PortFuture<'a, Result<Option<SoldOutSnapshot>, StoreError>> {
        Box::pin(async move {
            let Some(mark) = self.core.sold_out_mark_of(policy.id).await? else { return Ok(None) };
            let holders = self.core.holders_at_limit(policy.id, policy.max_issue_per_user).await?;
            // The holders read belong to `mark` only if it still holds after the scan.
            if self.core.sold_out_mark_of(policy.id).await?.as_ref() != Some(&mark) {
                return Ok(None);
            }
            Ok(Some(SoldOutSnapshot { mark, holders }))
        })
    }

    fn sold_out_mark(&self, policy: PolicyId) -> PortFuture<'_, Result<Option<SoldOutMark>, StoreError>> {
        Box::pin(self.core.sold_out_mark_of(policy))
    }

    fn units(&self, policy: PolicyId) -> PortFuture<'_, Result<Option<GateUnits>, StoreError>> {
        Box::pin(async move {
            let (stock, _) = self.core.keys(policy);
            // One slot (the policy's hash tag), so one MGET even on a cluster.
            let mut cmd = redis::cmd("MGET");
            cmd.arg(stock).arg(self.core.cap_key(policy));
            let (stock, cap): (Option<i64>, Option<i64>) =
                self.core.pool.query(&cmd).await.map_err(unavailable)?;
            // Unlimited (-1) or empty: nothing to count.
            Ok(match (stock.map(u32::try_from), cap.map(u32::try_from)) {
                (Some(Ok(stock)), Some(Ok(cap))) => Some(GateUnits { cap, stock }),
                _ => None,
            })
        })
    }
}
