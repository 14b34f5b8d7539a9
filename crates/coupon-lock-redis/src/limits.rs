//! `RateLimiter` on Redis: fixed windows per user (the hits of concurrent requests counted by one
//! pipelined round trip), for issuing and for code checks, and code-guessing blocks per user and
//! per address, each checked and counted by one script run. Losing these counters only forgives
//! callers.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coupon_domain::id::UserId;
use coupon_domain::limits::{CodeAttempt, CodeCaller, RateLimiter, RateStatus, RateVerdict};
use coupon_domain::port::{PortFuture, StoreError};
use redis::Script;

use crate::batch::{Batch, Batcher};
use crate::pool::{RedisError, RedisPool, Shard};

/// The limits (from `COUPON_RATE_LIMIT_*`).
#[derive(Debug, Clone, Copy)]
pub struct LimitConfig {
    pub per_minute: u32,
    pub per_hour: u32,
    /// Code checks (`validate`) per user per minute.
    pub validate_per_minute: u32,
    /// Unknown codes per hour before a caller is blocked.
    pub unknown_codes_per_hour: u32,
    pub block_for: Duration,
}

/// Rate limits and blocks in Redis.
#[derive(Debug, Clone)]
pub struct RedisRateLimiter {
    pool: RedisPool,
    config: LimitConfig,
    attempt: Script,
    settle: Script,
    /// Concurrent hits go to Redis together (see [`crate::batch`]).
    hits: Batcher<HitCounter>,
}

impl RedisRateLimiter {
    pub fn new(pool: RedisPool, config: LimitConfig) -> Self {
        Self {
            hits: Batcher::new(Arc::new(HitCounter { pool: pool.clone() })),
            pool,
            config,
            attempt: Script::new(include_str!("lua/code_attempt.lua")),
            settle: Script::new(include_str!("lua/code_settle.lua")),
        }
    }
}

/// Counts hits in the users' window counters.
#[derive(Debug)]
struct HitCounter {
    pool: RedisPool,
}

/// One hit of a user: the hash of their current hour (field `h` counts the hour, field `m<n>` the
/// hour's minute n) and the seconds left in that hour.
struct Hit {
    key: String,
    minute: String,
    hour_left: u64,
}

/// The hash tags the rate counters are spread over: `{r0}` to `{r15}`, by user. On a cluster a
/// pipeline goes to one slot, so users sharing a tag share a round trip; a tag per user made every
/// hit a round trip of its own (issuing at 0.55 of the single node's rate, docs/BENCHMARKS.md),
/// while 16 still spread the counters over up to 16 masters.
const RATE_BUCKETS: i64 = 16;

/// The hits of concurrent requests, counted by one pipeline: each window's counter, after the hit.
impl Batch for HitCounter {
    const NAME: &'static str = "rate_hit";
    /// On a cluster, the hits of one slot (a pipeline goes to one master).
    type Key = Shard;
    type Item = Hit;
    type Answer = [u32; 2];

    async fn run(&self, _: Shard, hits: &[&Hit]) -> Result<Vec<[u32; 2]>, RedisError> {
        // One key per user and hour, not one per window: each new user cost Redis two keys with
        // their expiries, and its time went to growing those dictionaries. The hash expires with
        // its hour (NX: only the first hit sets it), and a minute always lies within one hour.
        // Plain commands, not a script: these need no atomicity between them.
        let mut pipe = redis::pipe();
        for hit in hits {
            pipe.cmd("HINCRBY").arg(&hit.key).arg(&hit.minute).arg(1);
            pipe.cmd("HINCRBY").arg(&hit.key).arg("h").arg(1);
            pipe.cmd("EXPIRE").arg(&hit.key).arg(hit.hour_left).arg("NX").ignore();
        }
        let counts: Vec<u32> = self.pool.pipeline(&pipe).await?;
        Ok(counts.chunks_exact(2).map(|pair| [pair[0], pair[1]]).collect())
    }

    async fn unclaimed(&self, _: Shard, _: Hit, _: [u32; 2]) {
        // The hit counts: the request was made.
    }
}

/// The current window of `length` seconds: its index and the seconds until it ends.
fn window(length: u64) -> (u64, u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    (now / length, length - now % length)
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisRateLimiter {
    /// Counts one hit of `user` in the windows of `family` (`rate`, `validate`) and compares it
    /// with the limits.
    async fn hit(
        &self,
        family: &str,
        user: UserId,
        per_minute: u32,
        per_hour: u32,
    ) -> Result<RateVerdict, StoreError> {
        let ((minute, minute_left), (hour, hour_left)) = (window(60), window(3600));
        let hit = Hit {
            key: self.pool.key(&format!("{family}:{{r{}}}:{user}:{hour}", user.get() % RATE_BUCKETS)),
            minute: format!("m{}", minute % 60),
            hour_left,
        };
        let shard = self.pool.shard(&hit.key);
        let [in_minute, in_hour] = self.hits.submit(shard, hit).await.map_err(unavailable)?;
        let left_minute = per_minute.saturating_sub(in_minute);
        let left_hour = per_hour.saturating_sub(in_hour);
        let status = |reset: u64| RateStatus {
            limit: per_minute,
            remaining: left_minute.min(left_hour),
            reset_after: Duration::from_secs(reset),
        };
        Ok(if in_hour > per_hour {
            RateVerdict::Limited(status(hour_left))
        } else if in_minute > per_minute {
            RateVerdict::Limited(status(minute_left))
        } else {
            RateVerdict::Allowed(status(minute_left))
        })
    }

    /// The attempt counter and block flag of each party of `caller` (user, then address), keyed
    /// by the current hour. An address is written in its canonical form, at most 39 characters.
    fn code_keys(&self, caller: CodeCaller) -> Vec<(String, String)> {
        let (hour, _) = window(3600);
        let mut parties = vec![format!("user:{{{}}}", caller.user)];
        parties.extend(caller.address.map(|ip| format!("ip:{{{ip}}}")));
        parties
            .into_iter()
            .map(|party| {
                (
                    self.pool.key(&format!("unknown:{party}:{hour}")),
                    self.pool.key(&format!("blocked:{party}")),
                )
            })
            .collect()
    }
}

impl RateLimiter for RedisRateLimiter {
    fn hit_issue(&self, user: UserId) -> PortFuture<'_, Result<RateVerdict, StoreError>> {
        Box::pin(self.hit("rate", user, self.config.per_minute, self.config.per_hour))
    }

    fn hit_validate(&self, user: UserId) -> PortFuture<'_, Result<RateVerdict, StoreError>> {
        Box::pin(self.hit("validate", user, self.config.validate_per_minute, u32::MAX))
    }

    fn take_code_attempt(&self, caller: CodeCaller) -> PortFuture<'_, Result<CodeAttempt, StoreError>> {
        Box::pin(async move {
            let (_, hour_left) = window(3600);
            // One script run per party: the user's keys and the address's live in different
            // cluster slots. A user refused after the address took its attempt leaves that
            // attempt counted, which only errs towards blocking a guesser sooner.
            for (counter, blocked) in self.code_keys(caller) {
                let mut invocation = self.attempt.key(&counter);
                invocation
                    .key(&blocked)
                    .arg(hour_left)
                    .arg(self.config.unknown_codes_per_hour)
                    .arg(self.config.block_for.as_secs());
                let attempts: u32 = self.pool.invoke(&invocation).await.map_err(unavailable)?;
                if attempts == 0 {
                    return Ok(CodeAttempt::Blocked);
                }
            }
            Ok(CodeAttempt::Taken)
        })
    }

    fn settle_code_attempt(
        &self,
        caller: CodeCaller,
        unknown: bool,
    ) -> PortFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            for (counter, blocked) in self.code_keys(caller) {
                let mut invocation = self.settle.key(&counter);
                invocation
                    .key(&blocked)
                    .arg(u8::from(unknown))
                    .arg(self.config.unknown_codes_per_hour)
                    .arg(self.config.block_for.as_secs());
                let now_blocked: u32 = self.pool.invoke(&invocation).await.map_err(unavailable)?;
                if now_blocked == 1 {
                    tracing::warn!(user.id = %caller.user, address = ?caller.address, "caller blocked for guessing coupon codes");
                }
            }
            Ok(())
        })
    }
}
