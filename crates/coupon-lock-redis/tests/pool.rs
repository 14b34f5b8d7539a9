//! The pool against a Redis of its own that dies and comes back: commands share one connection,
//! so a dead one must be given up and replaced.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use coupon_lock_redis::pool::{RedisConfig, RedisPool};
use coupon_testkit::process::{Running, free_port};

fn start_redis(port: u16) -> Running {
    let env: HashMap<String, String> = std::env::vars().filter(|(k, _)| k == "PATH").collect();
    let port = port.to_string();
    Running::spawn("redis-server", &["--port", &port, "--save", "", "--appendonly", "no"], &env)
}

/// Retries `SET key value` until it succeeds (Redis starting) or `limit` passes.
async fn set_within(pool: &RedisPool, key: &str, value: &str, limit: Duration) {
    let started = Instant::now();
    loop {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        match pool.query::<String>(&cmd).await {
            Ok(_) => return,
            Err(e) if started.elapsed() < limit => {
                tracing::debug!(error = %e, "redis not there yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("SET still fails after {limit:?}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_fail_fast_while_redis_is_down_and_recover_when_it_is_back() {
    let port = free_port();
    let mut redis = start_redis(port);
    let pool = RedisPool::new(&RedisConfig {
        url: format!("redis://127.0.0.1:{port}/"),
        max_size: 4,
        timeout: Duration::from_secs(1),
        key_prefix: String::new(),
    })
    .expect("pool");
    set_within(&pool, "k", "before", Duration::from_secs(10)).await;

    redis.kill().await;
    let started = Instant::now();
    assert!(pool.query::<Option<String>>(redis::cmd("GET").arg("k")).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(3), "a dead Redis fails fast");

    let _redis = start_redis(port);
    set_within(&pool, "k", "after", Duration::from_secs(10)).await;
    let value: Option<String> = pool.query(redis::cmd("GET").arg("k")).await.expect("GET");
    assert_eq!(value.as_deref(), Some("after"), "the pool talks to the new server");
}
