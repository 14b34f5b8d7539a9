//! The issuing rate limit against the real Redis: counts per window, and counters that expire with
//! their window.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coupon_domain::id::UserId;
use coupon_domain::limits::{RateLimiter, RateVerdict};
use coupon_lock_redis::limits::{LimitConfig, RedisRateLimiter};
use coupon_lock_redis::pool::{RedisConfig, RedisPool};
use coupon_testkit::{redis_url, unique_suffix};

fn pool() -> RedisPool {
    RedisPool::new(&RedisConfig {
        url: redis_url(),
        max_size: 4,
        timeout: Duration::from_secs(5),
        key_prefix: format!("test:{}:", unique_suffix()),
    })
    .expect("pool")
}

/// Seconds left in the current window of `length` seconds.
fn left_in_window(length: u64) -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    length - now % length
}

async fn ttl(pool: &RedisPool, key: &str) -> i64 {
    let mut cmd = redis::cmd("TTL");
    cmd.arg(key);
    pool.query(&cmd).await.expect("ttl")
}

#[tokio::test]
async fn counters_count_each_hit_and_expire_with_their_window_set_by_the_first_hit() {
    // A burst must fall into one minute window.
    if left_in_window(60) < 5 {
        tokio::time::sleep(Duration::from_secs(left_in_window(60) + 1)).await;
    }
    let pool = pool();
    let limiter = RedisRateLimiter::new(
        pool.clone(),
        LimitConfig {
            per_minute: 5,
            per_hour: 20,
            unknown_codes_per_hour: 10,
            block_for: Duration::from_secs(60),
        },
    );
    let user = UserId::new(42).expect("user");
    let minute = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) / 60;
    let hour = minute / 60;
    let minute_key = pool.key(&format!("rate:{{{user}}}:m:{minute}"));
    let hour_key = pool.key(&format!("rate:{{{user}}}:h:{hour}"));

    let mut remaining = Vec::new();
    for _ in 0..6 {
        remaining.push(match limiter.hit_issue(user).await.expect("hit") {
            RateVerdict::Allowed(status) => Some(status.remaining),
            RateVerdict::Limited(_) => None,
        });
    }
    assert_eq!(remaining, [Some(4), Some(3), Some(2), Some(1), Some(0), None]);

    let (minute_ttl, hour_ttl) = (ttl(&pool, &minute_key).await, ttl(&pool, &hour_key).await);
    assert!((1..=60).contains(&minute_ttl), "the minute counter expires with its minute: {minute_ttl}");
    assert!((1..=3600).contains(&hour_ttl), "the hour counter expires with its hour: {hour_ttl}");

    // A later hit leaves the expiry as it is (here one longer than any window).
    let mut persist = redis::cmd("EXPIRE");
    persist.arg(&hour_key).arg(100_000);
    let _: i64 = pool.query(&persist).await.expect("expire");
    limiter.hit_issue(user).await.expect("hit");
    assert!(ttl(&pool, &hour_key).await > 3600, "NX: the hit did not set the expiry again");

    let mut counts = redis::cmd("MGET");
    counts.arg(&minute_key).arg(&hour_key);
    let counts: Vec<u32> = pool.query(&counts).await.expect("mget");
    assert_eq!(counts, [7, 7]);
}
