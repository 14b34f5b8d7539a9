//! The pool against a Redis of its own that dies and comes back: commands share one connection,
//! so a dead one must be given up and replaced.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coupon_domain::id::UserId;
use coupon_domain::limits::{RateLimiter, RateVerdict};
use coupon_lock_redis::limits::{LimitConfig, RedisRateLimiter};
use coupon_lock_redis::pool::{RedisConfig, RedisPool, RedisTarget};
use coupon_testkit::process::{Running, free_port};
use secrecy::SecretString;

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

/// A Redis of its own on a free port, and a pool with a 1 s timeout that has reached it.
async fn redis_with_pool() -> (u16, Running, RedisPool) {
    let port = free_port();
    let redis = start_redis(port);
    let pool = RedisPool::new(&RedisConfig {
        target: RedisTarget::Node(format!("127.0.0.1:{port}")),
        tls: None,
        username: None,
        password: None,
        max_size: 4,
        timeout: Duration::from_secs(1),
        key_prefix: String::new(),
    })
    .expect("pool");
    set_within(&pool, "k", "before", Duration::from_secs(10)).await;
    (port, redis, pool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_fail_fast_while_redis_is_down_and_recover_when_it_is_back() {
    let (port, mut redis, pool) = redis_with_pool().await;

    redis.kill().await;
    let started = Instant::now();
    assert!(pool.query::<Option<String>>(redis::cmd("GET").arg("k")).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(3), "a dead Redis fails fast");

    let _redis = start_redis(port);
    set_within(&pool, "k", "after", Duration::from_secs(10)).await;
    let value: Option<String> = pool.query(redis::cmd("GET").arg("k")).await.expect("GET");
    assert_eq!(value.as_deref(), Some("after"), "the pool talks to the new server");
}

/// A Redis of its own on `port` whose default user is off and whose only user is `coupon` with
/// the password `s3cret-pass`.
fn start_redis_with_acl(port: u16) -> Running {
    let env: HashMap<String, String> = std::env::vars().filter(|(k, _)| k == "PATH").collect();
    let port = port.to_string();
    let args =
        ["--port", &port, "--save", "", "--appendonly", "no", "--user", "default", "off", "--user", "coupon"];
    let acl = ["on", ">s3cret-pass", "~*", "&*", "+@all"];
    Running::spawn("redis-server", &[&args[..], &acl[..]].concat(), &env)
}

fn pool_as(port: u16, username: Option<&str>, password: Option<&str>) -> RedisPool {
    RedisPool::new(&RedisConfig {
        target: RedisTarget::Node(format!("127.0.0.1:{port}")),
        tls: None,
        username: username.map(str::to_owned),
        password: password.map(|p| SecretString::from(p.to_owned())),
        max_size: 2,
        timeout: Duration::from_secs(1),
        key_prefix: String::new(),
    })
    .expect("pool")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_is_let_in_and_wrong_or_missing_credentials_are_named_in_readiness() {
    let port = free_port();
    let _redis = start_redis_with_acl(port);
    let coupon = pool_as(port, Some("coupon"), Some("s3cret-pass"));
    set_within(&coupon, "k", "v", Duration::from_secs(10)).await;
    let value: Option<String> = coupon.query(redis::cmd("GET").arg("k")).await.expect("GET");
    assert_eq!(value.as_deref(), Some("v"));
    coupon.probe().check().await.expect("ready with the right credentials");

    for (who, pool) in [
        ("a wrong password", pool_as(port, Some("coupon"), Some("wrong"))),
        ("an unknown user", pool_as(port, Some("nobody"), Some("s3cret-pass"))),
        ("no credentials", pool_as(port, None, None)),
    ] {
        let refused = pool.probe().check().await.expect_err(who);
        assert_eq!(refused.reason, "AUTH_FAILED", "{who}: {refused}");
        assert!(!refused.to_string().contains("s3cret"), "{who}: the password stays out of the error");
    }
}

/// Calls batched into one round trip (here rate-limit hits) all fail fast together while Redis is
/// down, and the next ones are batched and answered once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_calls_fail_fast_together_while_redis_is_down() {
    let (port, mut redis, pool) = redis_with_pool().await;
    let limiter = Arc::new(RedisRateLimiter::new(
        pool.clone(),
        LimitConfig {
            per_minute: 1000,
            per_hour: 1000,
            validate_per_minute: 30,
            unknown_codes_per_hour: 10,
            block_for: Duration::from_secs(60),
        },
    ));
    let burst = |limiter: Arc<RedisRateLimiter>| async move {
        let hits: Vec<_> = (1..=50)
            .map(|n| {
                let limiter = limiter.clone();
                tokio::spawn(async move { limiter.hit_issue(UserId::new(n).expect("user")).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for hit in hits {
            outcomes.push(hit.await.expect("task"));
        }
        outcomes
    };
    assert!(burst(limiter.clone()).await.iter().all(Result::is_ok));

    redis.kill().await;
    let started = Instant::now();
    assert!(burst(limiter.clone()).await.iter().all(Result::is_err), "every caller hears the failure");
    assert!(started.elapsed() < Duration::from_secs(3), "a dead Redis fails fast");

    let _redis = start_redis(port);
    set_within(&pool, "k", "back", Duration::from_secs(10)).await;
    let outcomes = burst(limiter).await;
    assert!(outcomes.iter().all(|o| matches!(o, Ok(RateVerdict::Allowed(_)))), "{outcomes:?}");
}

/// A thread that sat idle while Redis restarted must not fail its next command on the dead socket
/// of its old shared connection: the failure seen on another thread renews every thread's.
#[test]
fn a_failure_on_one_thread_renews_the_idle_connections_of_the_others() {
    let runtime = || tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let here = runtime();
    // The Redis processes are children of this runtime.
    let _inside = here.enter();
    let (port, mut redis, pool) = here.block_on(redis_with_pool());

    // The other thread takes its own shared connection, then waits for the next step.
    let (step, steps) = std::sync::mpsc::channel::<&'static str>();
    let (done, outcomes) = std::sync::mpsc::channel::<Result<(), String>>();
    let other_pool = pool.clone();
    let other = std::thread::spawn(move || {
        let there = runtime();
        for what in steps {
            let outcome = there.block_on(async {
                match what {
                    "connect" => {
                        set_within(&other_pool, "other", "1", Duration::from_secs(10)).await;
                        Ok(())
                    }
                    _ => other_pool
                        .query::<Option<String>>(redis::cmd("GET").arg("other"))
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                }
            });
            done.send(outcome).expect("report");
        }
    });
    step.send("connect").expect("step");
    assert_eq!(outcomes.recv().expect("connected"), Ok(()));

    // Redis restarts; only this thread notices, by a command that fails.
    here.block_on(redis.kill());
    assert!(here.block_on(pool.query::<Option<String>>(redis::cmd("GET").arg("k"))).is_err());
    let _redis = start_redis(port);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "redis did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }

    step.send("get").expect("step");
    assert_eq!(outcomes.recv().expect("answered"), Ok(()), "the idle thread's first command succeeds");
    drop(step);
    other.join().expect("other thread");
}
