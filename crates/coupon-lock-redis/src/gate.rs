//! `StockGate` on Redis: keeps the losers of a first-come burst off PostgreSQL.
//!
//! Per policy, a stock counter and a hash of holders, both under one hash tag (`{policy id}`) so
//! one script touches one cluster slot. The gate is an accelerator: PostgreSQL still decides every
//! issue, the gate is rebuilt from PostgreSQL's numbers when it is empty (new, expired, flushed),
//! and a gate that is down makes the use case fall back to PostgreSQL alone.

use std::time::Duration;

use chrono::Utc;
use coupon_domain::id::{PolicyId, UserId};
use coupon_domain::issue::{GateDecision, SoldOutMark, SoldOutSnapshot, StockGate};
use coupon_domain::policy::Policy;
use coupon_domain::port::{PortFuture, StoreError};
use redis::Script;

use crate::pool::{RedisError, RedisPool};

/// Gate keys outlive the issuance window by this much, then expire by themselves.
const AFTER_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The first-come gate in Redis.
#[derive(Debug, Clone)]
pub struct RedisStockGate {
    pool: RedisPool,
    admit: Script,
    give_back: Script,
    sold_out: Script,
}

impl RedisStockGate {
    pub fn new(pool: RedisPool) -> Self {
        Self {
            pool,
            admit: Script::new(include_str!("lua/gate_admit.lua")),
            give_back: Script::new(include_str!("lua/gate_give_back.lua")),
            sold_out: Script::new(include_str!("lua/gate_sold_out.lua")),
        }
    }

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

    /// Runs `gate_sold_out.lua`: `None` unless the stock is 0, else the mark and (when
    /// `list_holders`) the users at `per_user`.
    async fn read_sold_out(
        &self,
        policy: PolicyId,
        per_user: u16,
        list_holders: bool,
    ) -> Result<Option<(SoldOutMark, Vec<UserId>)>, StoreError> {
        let (stock, holders) = self.keys(policy);
        let mut invocation = self.sold_out.key(stock);
        invocation
            .key(holders)
            .key(self.cap_key(policy))
            .key(self.returns_key(policy))
            .arg(per_user)
            .arg(if list_holders { "1" } else { "0" });
        let answer: Option<Vec<String>> = self.pool.invoke(&invocation).await.map_err(unavailable)?;
        let Some(answer) = answer else { return Ok(None) };
        let mut answer = answer.into_iter();
        let mark = answer
            .next()
            .map(SoldOutMark)
            .ok_or_else(|| StoreError::Unexpected(anyhow::anyhow!("the sold-out script answered no mark")))?;
        let holders = answer
            .map(|u| u.parse().ok().and_then(UserId::new))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| StoreError::Unexpected(anyhow::anyhow!("a gate holder is not a user id")))?;
        Ok(Some((mark, holders)))
    }
}

fn unavailable(e: RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl StockGate for RedisStockGate {
    fn admit<'a>(
        &'a self,
        policy: &'a Policy,
        user: UserId,
    ) -> PortFuture<'a, Result<GateDecision, StoreError>> {
        Box::pin(async move {
            let (stock, holders) = self.keys(policy.id);
            let initial = policy.remaining().map_or(-1, i64::from);
            let ttl =
                (policy.window.until() - Utc::now()).num_seconds().max(0) as u64 + AFTER_WINDOW.as_secs();
            let cap = policy.max_issue_count.map_or(-1, i64::from);
            let mut invocation = self.admit.key(stock);
            invocation
                .key(holders)
                .key(self.cap_key(policy.id))
                .arg(user.get())
                .arg(policy.max_issue_per_user)
                .arg(initial)
                .arg(ttl)
                .arg(cap);
            let answer: i64 = self.pool.invoke(&invocation).await.map_err(unavailable)?;
            match answer {
                0 => Ok(GateDecision::Admitted),
                1 => Ok(GateDecision::SoldOut),
                2 => Ok(GateDecision::AlreadyHolding),
                other => Err(StoreError::Unexpected(anyhow::anyhow!("gate script answered {other}"))),
            }
        })
    }

    fn give_back(&self, policy: PolicyId, user: UserId) -> PortFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let (stock, holders) = self.keys(policy);
            let mut invocation = self.give_back.key(stock);
            invocation.key(holders).key(self.returns_key(policy)).arg(user.get());
            let _: i64 = self.pool.invoke(&invocation).await.map_err(unavailable)?;
            Ok(())
        })
    }

    fn mark_sold_out(&self, policy: PolicyId) -> PortFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let (stock, _) = self.keys(policy);
            // XX: only an existing gate; KEEPTTL: it still expires with the campaign.
            let mut cmd = redis::cmd("SET");
            cmd.arg(stock).arg(0).arg("XX").arg("KEEPTTL");
            let _: Option<String> = self.pool.query(&cmd).await.map_err(unavailable)?;
            Ok(())
        })
    }

    fn forget(&self, policy: PolicyId) -> PortFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let (stock, holders) = self.keys(policy);
            let mut cmd = redis::cmd("DEL");
            cmd.arg(stock).arg(holders).arg(self.cap_key(policy)).arg(self.returns_key(policy));
            let _: i64 = self.pool.query(&cmd).await.map_err(unavailable)?;
            Ok(())
        })
    }

    fn sold_out_snapshot<'a>(
        &'a self,
        policy: &'a Policy,
    ) -> PortFuture<'a, Result<Option<SoldOutSnapshot>, StoreError>> {
        Box::pin(async move {
            let read = self.read_sold_out(policy.id, policy.max_issue_per_user, true).await?;
            Ok(read.map(|(mark, holders)| SoldOutSnapshot { mark, holders }))
        })
    }

    fn sold_out_mark(&self, policy: PolicyId) -> PortFuture<'_, Result<Option<SoldOutMark>, StoreError>> {
        Box::pin(async move {
            // The per-user limit only filters holders, which this read does not list.
            let read = self.read_sold_out(policy, 1, false).await?;
            Ok(read.map(|(mark, _)| mark))
        })
    }
}
