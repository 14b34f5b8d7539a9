//! `RateLimiter` on Redis: fixed windows per user (one pipelined round trip per request) and
//! code-guessing blocks per user and per address. Losing these counters only forgives callers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coupon_domain::id::UserId;
use coupon_domain::limits::{RateLimiter, RateStatus, RateVerdict};
use coupon_domain::port::{PortFuture, StoreError};
use redis::Script;

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
}

impl RedisRateLimiter {
    pub fn new(pool: RedisPool, config: LimitConfig) -> Self {
        Self { pool, config, unknown: Script::new(include_str!("lua/unknown_code.lua")) }
    }
}

/// The current window of `length` seconds: its index and the seconds until it ends.
fn window(length: u64) -> (u64, u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    (now / length, length - now % length)
}

fn unavailable(e: RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RateLimiter for RedisRateLimiter {
    fn hit_issue(&self, user: UserId) -> PortFuture<'_, Result<RateVerdict, StoreError>> {
        Box::pin(async move {
            let ((minute, minute_left), (hour, hour_left)) = (window(60), window(3600));
            let minute_key = self.pool.key(&format!("rate:{{{user}}}:m:{minute}"));
            let hour_key = self.pool.key(&format!("rate:{{{user}}}:h:{hour}"));
            // Each window's counter expires with the window (NX: only the first hit sets it).
            // Plain commands in one round trip, not a script: Redis spent about 5 µs per script
            // call on top of its commands, and these need no atomicity between them.
            let mut pipe = redis::pipe();
            for (key, left) in [(&minute_key, minute_left), (&hour_key, hour_left)] {
                pipe.cmd("INCR").arg(key).cmd("EXPIRE").arg(key).arg(left).arg("NX").ignore();
            }
            let (in_minute, in_hour): (u32, u32) = self.pool.pipeline(&pipe).await.map_err(unavailable)?;
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
