//! Issuing on a Redis Cluster (`REDIS_CLUSTER_NODES`, SPEC §11.7) of 3 masters and 3 replicas that
//! each test starts with `deploy/local/redis-cluster.sh`: the first-come race through two
//! api-servers, per-user rate limits whose batched hits span slots, and a master killed (kill -9)
//! in the middle of a burst, its replica promoted by the cluster.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use coupon_e2e::*;
use coupon_testkit::TestEnv;
use coupon_testkit::redis_cluster::RedisCluster;
use serde_json::json;
use tokio::sync::Mutex;

/// `args` run by `redis-cli -c` (following the cluster's redirections) against `cluster`.
fn cluster_cli(cluster: &RedisCluster, args: &[&str]) -> String {
    let first = cluster.nodes().split(',').next().and_then(|n| n.rsplit(':').next().map(str::to_owned));
    let output = std::process::Command::new("redis-cli")
        .args(["-c", "-h", "127.0.0.1", "-p", &first.expect("a node")])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The api-server's readiness: its HTTP status and the `redis` check's status.
async fn readiness(client: &reqwest::Client, base: &str) -> (u16, String) {
    let (status, body) =
        answer(client.get(format!("{base}/health/ready")).send().await.expect("ready")).await;
    let redis = body["checks"].as_array().into_iter().flatten().find(|c| c["name"] == "redis");
    (status, redis.and_then(|c| c["status"].as_str()).unwrap_or("absent").to_owned())
}

/// Downloads of `policy` by `users`, `parallel` at a time, alternating between `bases`; each
/// answer counted in `answered`. Returns each user's status.
async fn downloads(
    client: &reqwest::Client,
    bases: &[String],
    policy: i64,
    users: Vec<i64>,
    parallel: usize,
    answered: Arc<AtomicUsize>,
) -> HashMap<i64, u16> {
    let queue = Arc::new(Mutex::new(users));
    let workers: Vec<_> = (0..parallel)
        .map(|n| {
            let (client, base, queue, answered) =
                (client.clone(), bases[n % bases.len()].clone(), queue.clone(), answered.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                loop {
                    let Some(user) = queue.lock().await.pop() else { return statuses };
                    let body = json!({"couponPolicyId": policy, "userId": user});
                    statuses.push((user, download(&client, &base, user, body).await.0));
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let mut statuses = HashMap::new();
    for worker in workers {
        statuses.extend(worker.await.expect("worker"));
    }
    statuses
}

fn tally(statuses: &HashMap<i64, u16>, status: u16) -> usize {
    statuses.values().filter(|s| **s == status).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_users_through_two_instances_on_a_redis_cluster_get_exactly_the_hundred_coupons() {
    let cluster = RedisCluster::start();
    let env = TestEnv::new().await.set("REDIS_CLUSTER_NODES", cluster.nodes());
    let (a, b) = (start_api(&env), start_api(&env));
    let client = client();
    let policy = create_policy(&client, &a, policy_body("FIRST_COME", Some(100), 1)).await;

    let statuses =
        downloads(&client, &[a.clone(), b], policy, (1..=1000).collect(), 1000, Arc::default()).await;

    assert_eq!(tally(&statuses, 201), 100, "{statuses:?}");
    assert_eq!(tally(&statuses, 410), 900, "every other answer is COUPON_SOLD_OUT");
    assert_eq!(count(&env, "SELECT count(*) AS n FROM coupon_issues").await, 100);
    assert_eq!(count(&env, "SELECT current_issue_count::bigint AS n FROM coupon_policies").await, 100);
    // The race went through the cluster's gate, not around it.
    let holders = format!("{}gate:{{{policy}}}:holders", env.settings().redis.key_prefix);
    assert_eq!(cluster_cli(&cluster, &["HLEN", &holders]), "100", "the gate's holders on the cluster");
    assert_eq!(readiness(&client, &a).await, (200, "UP".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limits_hold_per_user_when_one_batch_of_hits_spans_many_slots() {
    let cluster = RedisCluster::start();
    let env = rate_limited_env(2, 100).await.set("REDIS_CLUSTER_NODES", cluster.nodes());
    let base = start_api(&env);
    let client = client();
    let policy = create_policy(&client, &base, policy_body("DOWNLOAD", Some(1000), 10)).await;

    // 60 users, 3 requests each, all at once: the hits of different users (different slots) arrive
    // together, and each user's third request is over the limit of 2 a minute.
    let users: Vec<i64> = (1..=60).flat_map(|u| [u, u, u]).collect();
    let queue_len = users.len();
    let answers: Vec<(i64, u16)> = {
        let tasks: Vec<_> = users
            .into_iter()
            .map(|user| {
                let (client, base) = (client.clone(), base.clone());
                tokio::spawn(async move {
                    let body = json!({"couponPolicyId": policy, "userId": user});
                    (user, download(&client, &base, user, body).await.0)
                })
            })
            .collect();
        let mut answers = Vec::with_capacity(queue_len);
        for task in tasks {
            answers.push(task.await.expect("task"));
        }
        answers
    };
    for user in 1..=60 {
        let mine: Vec<u16> = answers.iter().filter(|(u, _)| *u == user).map(|(_, s)| *s).collect();
        assert_eq!(mine.iter().filter(|s| **s == 429).count(), 1, "user {user}: {mine:?}");
        assert_eq!(mine.iter().filter(|s| **s == 201).count(), 2, "user {user}: {mine:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_killed_mid_burst_oversells_nothing_and_the_stock_reconciles() {
    const STOCK: i64 = 300;
    let cluster = RedisCluster::start();
    let env = TestEnv::new().await.set("REDIS_CLUSTER_NODES", cluster.nodes()).set("REDIS_TIMEOUT", "1");
    let (a, b) = (start_api(&env), start_api(&env));
    let client = client();
    let policy = create_policy(&client, &a, policy_body("FIRST_COME", Some(STOCK), 1)).await;
    let stock_key = format!("{}gate:{{{policy}}}:stock", env.settings().redis.key_prefix);
    let master = cluster.master_of(&stock_key);

    // Readiness is polled all along.
    let polling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let poller = {
        let (client, a, polling) = (client.clone(), a.clone(), polling.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while polling.load(Ordering::SeqCst) {
                seen.push(readiness(&client, &a).await.0);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            seen
        })
    };

    let answered = Arc::new(AtomicUsize::new(0));
    let killer = {
        let answered = answered.clone();
        let cluster = &cluster;
        async move {
            while answered.load(Ordering::SeqCst) < 100 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            cluster.kill(master);
        }
    };
    let bases = [a.clone(), b.clone()];
    // 250 users for 300 coupons: stock is left for after the failover.
    let (first, ()) =
        tokio::join!(downloads(&client, &bases, policy, (1..=250).collect(), 16, answered), killer);
    let new_master = cluster.wait_for_failover(&stock_key, master, Duration::from_secs(30));
    assert_ne!(new_master, master);

    assert!(first.values().all(|s| [201, 410].contains(s)), "{first:?}");
    let issued = count(&env, "SELECT count(*) AS n FROM coupon_issues").await;
    assert!(issued <= STOCK, "oversold: {issued}");
    assert_eq!(
        issued,
        i64::try_from(tally(&first, 201)).expect("small"),
        "every 201 is a row, and only those"
    );
    let twice =
        count(&env, "SELECT count(*) AS n FROM (SELECT user_id FROM coupon_issues GROUP BY user_id HAVING count(*) > 1) t")
            .await;
    assert_eq!(twice, 0, "nobody holds two");

    // New users keep coming: whatever the promoted replica's gate lost or kept, the stock left in
    // PostgreSQL is issued within SPEC §10's 10 s, and not one coupon more.
    let started = Instant::now();
    let mut next_user = 251;
    while count(&env, "SELECT count(*) AS n FROM coupon_issues").await < STOCK {
        assert!(started.elapsed() < Duration::from_secs(30), "stock left in PostgreSQL is not issued");
        let users: Vec<i64> = (next_user..next_user + 50).collect();
        next_user += 50;
        let statuses = downloads(&client, &bases, policy, users, 16, Arc::default()).await;
        assert!(statuses.values().all(|s| [201, 410].contains(s)), "{statuses:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(count(&env, "SELECT count(*) AS n FROM coupon_issues").await, STOCK);
    assert_eq!(count(&env, "SELECT current_issue_count::bigint AS n FROM coupon_policies").await, STOCK);
    let late = json!({"couponPolicyId": policy, "userId": next_user});
    assert_eq!(download(&client, &a, next_user, late).await.0, 410, "sold out, and said so");

    polling.store(false, Ordering::SeqCst);
    let seen = poller.await.expect("poller");
    assert!(seen.iter().all(|status| *status == 200), "api-server stayed ready: {seen:?}");
    let (status, redis) = readiness(&client, &a).await;
    assert_eq!((status, redis.as_str()), (200, "UP"), "every slot has a live master again");
}
