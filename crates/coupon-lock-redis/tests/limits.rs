//! The issuing rate limit against the real Redis: counts per window, in a hash per user and hour
//! that expires with its hour.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coupon_domain::id::UserId;
use coupon_domain::limits::{RateLimiter, RateVerdict};
use coupon_lock_redis::limits::{LimitConfig, RedisRateLimiter};
use coupon_lock_redis::pool::{RedisConfig, RedisPool, RedisTarget};
use coupon_testkit::{redis_node, unique_suffix};

fn pool() -> RedisPool {
    RedisPool::new(&RedisConfig {
        target: RedisTarget::Node(redis_node()),
        tls: None,
        username: None,
        password: None,
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
async fn counters_count_each_hit_and_expire_with_their_hour_set_by_the_first_hit() {
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
            validate_per_minute: 30,
            unknown_codes_per_hour: 10,
            block_for: Duration::from_secs(60),
        },
    );
    let user = UserId::new(42).expect("user");
    let minute = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) / 60;
    let hour = minute / 60;
    let key = pool.key(&format!("rate:{{r{}}}:{user}:{hour}", user.get() % 16));
    let minute_field = format!("m{}", minute % 60);

    let mut remaining = Vec::new();
    for _ in 0..6 {
        remaining.push(match limiter.hit_issue(user).await.expect("hit") {
            RateVerdict::Allowed(status) => Some(status.remaining),
            RateVerdict::Limited(_) => None,
        });
    }
    assert_eq!(remaining, [Some(4), Some(3), Some(2), Some(1), Some(0), None]);

    let hour_ttl = ttl(&pool, &key).await;
    assert!((1..=3600).contains(&hour_ttl), "the counters expire with their hour: {hour_ttl}");

    // A later hit leaves the expiry as it is (here one longer than any window).
    let mut persist = redis::cmd("EXPIRE");
    persist.arg(&key).arg(100_000);
    let _: i64 = pool.query(&persist).await.expect("expire");
    limiter.hit_issue(user).await.expect("hit");
    assert!(ttl(&pool, &key).await > 3600, "NX: the hit did not set the expiry again");

    let mut counts = redis::cmd("HMGET");
    counts.arg(&key).arg(&minute_field).arg("h");
    let counts: Vec<u32> = pool.query(&counts).await.expect("hmget");
    assert_eq!(counts, [7, 7]);
}

/// Hits made together go to Redis as one pipeline and are each counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_hits_are_each_counted_once() {
    if left_in_window(60) < 5 {
        tokio::time::sleep(Duration::from_secs(left_in_window(60) + 1)).await;
    }
    let limiter = std::sync::Arc::new(RedisRateLimiter::new(
        pool(),
        LimitConfig {
            per_minute: 30,
            per_hour: 1000,
            validate_per_minute: 30,
            unknown_codes_per_hour: 10,
            block_for: Duration::from_secs(60),
        },
    ));
    let hits: Vec<_> = (0..100)
        .map(|n| {
            let limiter = limiter.clone();
            // Two users, fifty hits each.
            let user = UserId::new(1 + n % 2).expect("user");
            tokio::spawn(async move { limiter.hit_issue(user).await.expect("hit") })
        })
        .collect();
    let mut allowed = 0;
    for hit in hits {
        if matches!(hit.await.expect("task"), RateVerdict::Allowed(_)) {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 60, "thirty hits a minute for each of the two users");
}
