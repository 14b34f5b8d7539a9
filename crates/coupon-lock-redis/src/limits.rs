//! `RateLimiter` on Redis: fixed windows per user (the hits of concurrent requests counted by one
//! pipelined round trip) and code-guessing blocks per user and per address. Losing these counters
//! only forgives callers.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coupon_domain::id::UserId;
use coupon_domain::limits::{RateLimiter, RateStatus, RateVerdict};
use coupon_domain::port::{PortFuture, StoreError};
use redis::Script;

use crate::batch::{Batch, Batcher};
use crate::pool::{RedisError, RedisPool};

/// The limits (from `COUPON_RATE_LIMIT_*`).
#[derive(Debug, Clone, Copy)]
pub struct LimitConfig {
    pub per_minute: u32,
    pub per_hour: u32,
    /// Unknown codes per hour before a caller is blocked.
    pub unknown_codes_per_hour: u32,
    pub block_for: Duration,
}

/// Rate limits and blocks in Redis.
#[derive(Debug, Clone)]
pub struct RedisRateLimiter {
    pool: RedisPool,
    config: LimitConfig,
    unknown: Script,
    /// Concurrent hits go to Redis together (see [`crate::batch`]).
    hits: Batcher<HitCounter>,
}

impl RedisRateLimiter {
    pub fn new(pool: RedisPool, config: LimitConfig) -> Self {
        Self {
            hits: Batcher::new(Arc::new(HitCounter { pool: pool.clone() })),
            pool,
            config,
            unknown: Script::new(include_str!("lua/unknown_code.lua")),
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

/// The hits of concurrent requests, counted by one pipeline: each window's counter, after the hit.
impl Batch for HitCounter {
    const NAME: &'static str = "rate_hit";
    type Key = ();
    type Item = Hit;
    type Answer = [u32; 2];

    async fn run(&self, (): (), hits: &[Hit]) -> Result<Vec<[u32; 2]>, RedisError> {
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

    async fn unclaimed(&self, (): (), _: Hit, _: [u32; 2]) {
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

impl RateLimiter for RedisRateLimiter {
    fn hit_issue(&self, user: UserId) -> PortFuture<'_, Result<RateVerdict, StoreError>> {
        Box::pin(async move {
            let ((minute, minute_left), (hour, hour_left)) = (window(60), window(3600));
            let hit = Hit {
                key: self.pool.key(&format!("rate:{{{user}}}:{hour}")),
                minute: format!("m{}", minute % 60),
                hour_left,
            };
            let [in_minute, in_hour] = self.hits.submit((), hit).await.map_err(unavailable)?;
            let c = self.config;
            let left_minute = c.per_minute.saturating_sub(in_minute);
            let left_hour = c.per_hour.saturating_sub(in_hour);
            let status = |reset: u64| RateStatus {
                limit: c.per_minute,
                remaining: left_minute.min(left_hour),
                reset_after: Duration::from_secs(reset),
            };
            Ok(if in_hour > c.per_hour {
                RateVerdict::Limited(status(hour_left))
            } else if in_minute > c.per_minute {
                RateVerdict::Limited(status(minute_left))
            } else {
                RateVerdict::Allowed(status(minute_left))
            })
        })
    }

    fn is_blocked<'a>(&'a self, user: UserId, ip: &'a str) -> PortFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            // Separate commands: the two keys live in different cluster slots.
            for key in [format!("blocked:user:{{{user}}}"), format!("blocked:ip:{{{ip}}}")] {
                let mut cmd = redis::cmd("EXISTS");
                cmd.arg(self.pool.key(&key));
                let found: u32 = self.pool.query(&cmd).await.map_err(unavailable)?;
                if found > 0 {
                    return Ok(true);
                }
            }
            Ok(false)
        })
    }

    fn record_unknown_code<'a>(
        &'a self,
        user: UserId,
        ip: &'a str,
    ) -> PortFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let (hour, hour_left) = window(3600);
            for caller in [format!("user:{{{user}}}"), format!("ip:{{{ip}}}")] {
                let mut invocation = self.unknown.key(self.pool.key(&format!("unknown:{caller}:{hour}")));
                invocation
                    .key(self.pool.key(&format!("blocked:{caller}")))
                    .arg(hour_left)
                    .arg(self.config.unknown_codes_per_hour)
                    .arg(self.config.block_for.as_secs());
                let attempts: u32 = self.pool.invoke(&invocation).await.map_err(unavailable)?;
                if attempts == self.config.unknown_codes_per_hour {
                    tracing::warn!(caller, attempts, "caller blocked for guessing coupon codes");
                }
            }
            Ok(())
        })
    }
}
