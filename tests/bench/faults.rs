//! `just faults` driver (deploy/local/faults.sh starts its private PostgreSQL and Redis and calls
//! it): faults injected into release binaries under load, each scenario printed as one row
//!
//! `scenario | load | acknowledged | committed | lost | oversold | leaked stock | stalled partitions | recovery`
//!
//! then `N passed, N failed`, with exit status 1 when a scenario failed. Reads the usual
//! `DATABASE_*`, `REDIS_*` and `KAFKA_*` variables (the private services), the release binaries
//! from `FAULT_BIN_DIR`, and `FAULT_PG_RESTART`, the command that restarts the private PostgreSQL.
//!
//! Usage: fault-suite [SCENARIO...] (all when none)

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coupon_e2e::{Producer, count, count_until, create_policy, policy_body, records};
use coupon_testkit::TestEnv;
use coupon_testkit::process::{Running, free_port, wait_for_ready};
use serde_json::json;

/// First-come cap of the issuing scenarios and the clients racing for it.
const CAP: i64 = 3_000;
const CLIENTS: usize = 48;

/// One scenario's row.
#[derive(Debug, Default)]
struct Row {
    scenario: &'static str,
    load: String,
    acknowledged: i64,
    committed: i64,
    lost: i64,
    oversold: i64,
    leaked: i64,
    stalled: i64,
    recovery: Option<Duration>,
    /// Why it failed, if it did.
    failure: Option<String>,
}

impl Row {
    fn print(&self) {
        let recovery = self.recovery.map_or_else(|| "-".to_owned(), |d| format!("{:.1}s", d.as_secs_f64()));
        let verdict = self.failure.as_ref().map_or_else(|| "PASS".to_owned(), |f| format!("FAIL: {f}"));
        say(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {verdict}",
            self.scenario,
            self.load,
            self.acknowledged,
            self.committed,
            self.lost,
            self.oversold,
            self.leaked,
            self.stalled,
            recovery
        ));
    }
}

#[expect(clippy::print_stdout, reason = "the rows are this tool's output")]
fn say(line: &str) {
    println!("{line}");
}

fn binary(name: &str) -> String {
    let dir = std::env::var("FAULT_BIN_DIR").unwrap_or_else(|_| "target/release".into());
    format!("{dir}/{name}")
}

/// A release api-server of `env` on `port`, ready.
async fn api_server(env: &TestEnv, port: u16) -> Running {
    coupon_e2e::api_process(
        &binary("api-server"),
        &env.clone_with("COUPON_RATE_LIMIT_ENABLED", "false"),
        port,
    )
    .await
}

/// Distinct users downloading a first-come policy as fast as `CLIENTS` connections allow, until
/// stopped: the coupon ids acknowledged with 201, and when the first answer (not a 5xx) to a
/// request sent after the fault was undone came (recovery is measured from the fault's start).
struct Load {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<i64>>>,
    first_after_mark: Arc<Mutex<Option<Instant>>>,
    /// When the fault was undone.
    mark: Arc<Mutex<Option<Instant>>>,
    fault_at: Mutex<Option<Instant>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(base: &str, policy: i64) -> Self {
        let client = coupon_e2e::client();
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let first_after_mark = Arc::new(Mutex::new(None));
        let mark: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
        let next_user = Arc::new(AtomicI64::new(1));
        let tasks = (0..CLIENTS)
            .map(|_| {
                let (client, base, stop, acknowledged, first, mark, next_user) = (
                    client.clone(),
                    base.to_owned(),
                    stop.clone(),
                    acknowledged.clone(),
                    first_after_mark.clone(),
                    mark.clone(),
                    next_user.clone(),
                );
                tokio::spawn(async move {
                    let mut user = next_user.fetch_add(1, Ordering::Relaxed);
                    while !stop.load(Ordering::Relaxed) {
                        let sent_at = Instant::now();
                        let sent = client
                            .post(format!("{base}/api/coupons/download"))
                            .header("X-User-Id", user.to_string())
                            .json(&json!({"couponPolicyId": policy, "userId": user}))
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await;
                        let Ok(response) = sent else {
                            // The server is down: the same user tries again, nothing was acknowledged.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        };
                        let status = response.status().as_u16();
                        // Recovery ends with the first answer (not a 5xx) to a request sent after
                        // the fault was undone: a sold-out 410 is an answer too.
                        if status < 500 && mark.lock().expect("lock").is_some_and(|at| sent_at >= at) {
                            first.lock().expect("lock").get_or_insert_with(Instant::now);
                        }
                        if status == 201 {
                            let body: serde_json::Value = response.json().await.unwrap_or_default();
                            if let Some(id) = body["couponId"].as_i64() {
                                acknowledged.lock().expect("lock").push(id);
                            }
                        } else if status >= 500 {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                        user = next_user.fetch_add(1, Ordering::Relaxed);
                        if status == 410 {
                            // Sold out (or a gate that lost units): keep asking, gently.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                })
            })
            .collect();
        Self { stop, acknowledged, first_after_mark, mark, fault_at: Mutex::new(None), tasks }
    }

    fn acknowledged(&self) -> i64 {
        i64::try_from(self.acknowledged.lock().expect("lock").len()).unwrap_or(i64::MAX)
    }

    /// The fault begins now.
    fn fault_begins(&self) {
        *self.fault_at.lock().expect("lock") = Some(Instant::now());
    }

    /// The fault was undone: the next answer to a request sent from now on ends the recovery.
    fn fault_undone(&self) {
        *self.first_after_mark.lock().expect("lock") = None;
        *self.mark.lock().expect("lock") = Some(Instant::now());
    }

    /// From the fault's start to the first answer to a request sent after it was undone.
    fn recovery(&self) -> Option<Duration> {
        let start = (*self.fault_at.lock().expect("lock"))?;
        self.first_after_mark.lock().expect("lock").map(|at| at.duration_since(start))
    }

    async fn stop(self) -> (Vec<i64>, Option<Duration>) {
        self.stop.store(true, Ordering::Relaxed);
        let recovery = self.recovery();
        for task in self.tasks {
            let _ = task.await;
        }
        let acknowledged = self.acknowledged.lock().expect("lock").clone();
        (acknowledged, recovery)
    }
}

/// Coupons of `policy` in PostgreSQL.
async fn committed(env: &TestEnv, policy: i64) -> i64 {
    count(env, &format!("SELECT count(*) AS n FROM coupon_issues WHERE policy_id = {policy}")).await
}

/// Waits until the policy sold all of `CAP` in PostgreSQL (or `limit` passes).
async fn until_sold_out(env: &TestEnv, policy: i64, limit: Duration) -> i64 {
    let deadline = Instant::now() + limit;
    loop {
        let n = committed(env, policy).await;
        if n >= CAP || Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Fills in the issuing columns and the verdict: every acknowledged coupon committed, the cap
/// neither exceeded nor left unsold.
async fn judge_issuing(
    env: &TestEnv,
    policy: i64,
    row: &mut Row,
    acknowledged: &[i64],
    recovery: Option<Duration>,
) {
    use diesel_async::RunQueryDsl;
    let ids: HashSet<i64> = acknowledged.iter().copied().collect();
    let mut conn = env.database.connect().await;
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    let stored: HashSet<i64> =
        diesel::sql_query(format!("SELECT id FROM coupon_issues WHERE policy_id = {policy}"))
            .load::<Id>(&mut conn)
            .await
            .expect("coupon ids")
            .into_iter()
            .map(|r| r.id)
            .collect();
    row.acknowledged = i64::try_from(ids.len()).unwrap_or(i64::MAX);
    row.committed = i64::try_from(stored.len()).unwrap_or(i64::MAX);
    row.lost = i64::try_from(ids.difference(&stored).count()).unwrap_or(i64::MAX);
    row.oversold = (row.committed - CAP).max(0);
    row.leaked = (CAP - row.committed).max(0);
    row.recovery = recovery;
    let counter = count(
        env,
        &format!("SELECT current_issue_count::bigint AS n FROM coupon_policies WHERE id = {policy}"),
    )
    .await;
    row.failure = if row.lost > 0 {
        Some(format!("{} acknowledged coupons are not in PostgreSQL", row.lost))
    } else if row.oversold > 0 || row.leaked > 0 {
        Some(format!("{} coupons for a cap of {CAP}", row.committed))
    } else if counter != row.committed {
        Some(format!("the counter says {counter}, the table {}", row.committed))
    } else if recovery.is_none() {
        Some("no request was answered after the fault".into())
    } else {
        None
    };
}

/// An issuing burst with a fault injected once a third of the cap is acknowledged (at most 2 s
/// in), then undone by `recover`.
async fn issuing_under<F, R>(scenario: &'static str, env: TestEnv, fault: F, recover: R) -> Row
where
    F: AsyncFnOnce(&mut Running),
    R: AsyncFnOnce(&mut Option<Running>, &TestEnv, u16),
{
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut api = Some(api_server(&env, port).await);
    let policy = create_policy(&coupon_e2e::client(), &base, policy_body("FIRST_COME", Some(CAP), 1)).await;
    let load = Load::start(&base, policy);
    let started = Instant::now();
    while load.acknowledged() < CAP / 3 && started.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    load.fault_begins();
    if let Some(api) = api.as_mut() {
        fault(api).await;
    }
    recover(&mut api, &env, port).await;
    load.fault_undone();
    until_sold_out(&env, policy, Duration::from_secs(60)).await;
    // A few seconds more: nothing may be issued past the cap.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (acknowledged, recovery) = load.stop().await;
    let mut row =
        Row { scenario, load: format!("FIRST_COME cap {CAP}, {CLIENTS} clients"), ..Row::default() };
    judge_issuing(&env, policy, &mut row, &acknowledged, recovery).await;
    if let Some(api) = api {
        api.terminate().await;
    }
    row
}

fn redis_port() -> String {
    std::env::var("REDIS_PORT").unwrap_or_else(|_| "6379".into())
}

async fn redis_command(args: &[&str]) {
    let status = tokio::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &redis_port()])
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .await;
    assert!(status.is_ok(), "redis-cli {args:?}");
}

async fn start_redis() {
    let port = redis_port();
    let status = tokio::process::Command::new("redis-server")
        .args([
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
        ])
        .status()
        .await
        .expect("redis-server");
    assert!(status.success());
}

async fn restart_postgres() {
    let command = std::env::var("FAULT_PG_RESTART").expect("FAULT_PG_RESTART names the restart command");
    let status = tokio::process::Command::new("sh").args(["-c", &command]).status().await.expect("restart");
    assert!(status.success(), "{command} failed");
}

async fn api_kill(env: TestEnv) -> Row {
    issuing_under(
        "kill -9 api-server mid burst",
        env,
        async |api: &mut Running| api.kill().await,
        async |api: &mut Option<Running>, env: &TestEnv, port| {
            *api = Some(api_server(env, port).await);
        },
    )
    .await
}

async fn redis_flush(env: TestEnv) -> Row {
    issuing_under(
        "Redis FLUSHALL mid burst",
        env,
        async |_: &mut Running| redis_command(&["FLUSHALL"]).await,
        async |_: &mut Option<Running>, _: &TestEnv, _| {},
    )
    .await
}

async fn redis_down(env: TestEnv) -> Row {
    issuing_under(
        "Redis stopped 5 s mid burst",
        env,
        async |_: &mut Running| redis_command(&["SHUTDOWN", "NOSAVE"]).await,
        async |_: &mut Option<Running>, _: &TestEnv, _| {
            tokio::time::sleep(Duration::from_secs(5)).await;
            start_redis().await;
        },
    )
    .await
}

async fn postgres_restart(env: TestEnv) -> Row {
    issuing_under(
        "PostgreSQL restart mid burst",
        env,
        async |_: &mut Running| restart_postgres().await,
        async |_: &mut Option<Running>, _: &TestEnv, _| {},
    )
    .await
}

/// `n` coupons of users `1..=n`, each RESERVED by its PENDING reservation `S{user}` for order
/// `O-S{user}`, expiring at `expires` (SQL); the coupon ids by user.
async fn reservations(env: &TestEnv, n: i64, expires: &str) -> BTreeMap<i64, i64> {
    use diesel_async::RunQueryDsl;
    let mut conn = env.database.connect().await;
    for sql in [
        "INSERT INTO coupon_policies (id, coupon_name, discount_type, discount_value, distribution_type, valid_days, valid_from, valid_until) \
         VALUES (1, 'faults', 'FIXED_AMOUNT', 1000, 'DOWNLOAD', 30, now() - interval '1 day', now() + interval '1 day')".to_owned(),
        format!(
            "WITH c AS (INSERT INTO coupon_issues (policy_id, user_id, status, reservation_id, reserved_at, issued_at, expires_at) \
                        SELECT 1, u, 'RESERVED', 'S' || u, now() - interval '2 hours', now() - interval '3 hours', now() + interval '30 days' \
                        FROM generate_series(1, {n}) u RETURNING id, user_id, reservation_id) \
             INSERT INTO coupon_reservations (reservation_id, coupon_id, user_id, order_id, order_amount, discount_amount, \
                                              status, reserved_at, expires_at, created_at, updated_at) \
             SELECT reservation_id, id, user_id, 'O-' || reservation_id, 50000, 1000, 'PENDING', now() - interval '2 hours', {expires}, now(), now() FROM c"
        ),
    ] {
        diesel::sql_query(sql).execute(&mut conn).await.expect("reservations");
    }
    #[derive(diesel::QueryableByName)]
    struct Owned {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        user_id: i64,
    }
    diesel::sql_query("SELECT id, user_id FROM coupon_issues")
        .load::<Owned>(&mut conn)
        .await
        .expect("coupons")
        .into_iter()
        .map(|o| (o.user_id, o.id))
        .collect()
}

/// A release event-worker of `env`, ready, its topics created.
async fn event_worker(env: &TestEnv) -> Running {
    let admin = free_port();
    let mut vars = env.vars.clone();
    vars.insert("WORKER_ADMIN_PORT".into(), admin.to_string());
    let worker = Running::spawn(&binary("event-worker"), &[], &vars);
    let (status, body) =
        wait_for_ready(&format!("http://127.0.0.1:{admin}/health/ready"), Duration::from_secs(60)).await;
    assert_eq!(status, 200, "event-worker not ready: {body}");
    worker
}

/// The payment.completed of reservation `S{k}` for every `k` of `coupons`, one produce call each.
async fn pay_all(env: &TestEnv, coupons: &BTreeMap<i64, i64>) {
    let topic = env.settings().kafka.topics.payment_completed;
    let mut producer = Producer::connect(env).await;
    for (k, coupon) in coupons {
        let value = json!({"eventId": format!("pay-{k}"), "eventType": "PAYMENT_COMPLETED",
            "data": {"paymentId": format!("PAY-{k}"), "orderId": format!("O-S{k}"), "userId": k,
                     "couponId": coupon, "reservationId": format!("S{k}")}});
        producer.send(&topic, &coupon.to_string(), &value.to_string()).await;
    }
}

const CONFIRMED: &str = "SELECT count(*) AS n FROM coupon_reservations WHERE status = 'CONFIRMED'";

/// kill -9 of the event-worker a third into 5,000 payments, then a restart: every payment applied
/// once, offsets at the end.
async fn worker_kill(env: TestEnv) -> Row {
    const N: i64 = 5_000;
    let coupons = reservations(&env, N, "now() + interval '1 hour'").await;
    let mut worker = event_worker(&env).await;
    let topic = env.settings().kafka.topics.payment_completed;
    while !coupon_e2e::topic_exists(&env, &topic).await {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let producing = {
        let env = env.clone_with("LOG_LEVEL", "error");
        tokio::spawn(async move { pay_all(&env, &coupons).await })
    };
    let mut at_kill = 0;
    let started = Instant::now();
    while at_kill < N / 3 && started.elapsed() < Duration::from_secs(120) {
        at_kill = count(&env, CONFIRMED).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.kill().await;
    let killed = Instant::now();
    // What the dead process committed; progress beyond it is the new one's.
    let at_kill = count(&env, CONFIRMED).await;
    let restarted = event_worker(&env).await;
    let mut recovery = None;
    while recovery.is_none() && killed.elapsed() < Duration::from_secs(60) {
        if count(&env, CONFIRMED).await > at_kill {
            recovery = Some(killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    producing.await.expect("producer");
    let confirmed = count_until(&env, CONFIRMED, N, Duration::from_secs(120)).await;
    let used_events = count(&env, "SELECT count(*) AS n FROM outbox WHERE event_type = 'COUPON_USED'").await;
    let offsets = count_until(
        &env,
        "SELECT COALESCE(sum(next_offset), 0)::bigint AS n FROM consumer_offsets WHERE topic LIKE 'payment.completed%'",
        N,
        Duration::from_secs(30),
    )
    .await;
    restarted.terminate().await;
    let mut row = Row {
        scenario: "kill -9 event-worker mid stream",
        load: format!("{N} payments, killed at {at_kill} applied"),
        acknowledged: N,
        committed: confirmed,
        lost: N - confirmed,
        oversold: used_events - confirmed,
        stalled: (N - offsets).max(0),
        recovery,
        ..Row::default()
    };
    row.failure = (confirmed != N || used_events != N || offsets != N)
        .then(|| format!("{confirmed} confirmed, {used_events} coupon.used, offsets {offsets}, for {N}"));
    row
}

/// kill -9 of the scheduler while its reservation-timeout job releases 20,000 expired
/// reservations in batches of 100, then a restart: each released once, with one event.
async fn scheduler_kill(env: TestEnv) -> Row {
    const N: i64 = 20_000;
    reservations(&env, N, "now() - interval '1 hour'").await;
    let env = env
        .set("SCHEDULER_RESERVATION_TIMEOUT_CRON", "* * * * * *")
        .set("SCHEDULER_BATCH_SIZE", "100")
        .set("SCHEDULER_LOCK_LEASE", "3");
    let start = |env: &TestEnv| {
        let mut vars = env.vars.clone();
        vars.insert("SCHEDULER_ADMIN_PORT".into(), free_port().to_string());
        Running::spawn(&binary("scheduler"), &[], &vars)
    };
    let expired = "SELECT count(*) AS n FROM coupon_reservations WHERE status = 'EXPIRED'";
    let mut scheduler = start(&env);
    let mut at_kill = 0;
    let started = Instant::now();
    while at_kill < N / 5 && started.elapsed() < Duration::from_secs(120) {
        at_kill = count(&env, expired).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    scheduler.kill().await;
    let killed = Instant::now();
    let at_kill = count(&env, expired).await;
    let restarted = start(&env);
    let mut recovery = None;
    while recovery.is_none() && killed.elapsed() < Duration::from_secs(60) {
        if count(&env, expired).await > at_kill {
            recovery = Some(killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = count_until(&env, expired, N, Duration::from_secs(180)).await;
    restarted.terminate().await;
    let issued = count(&env, "SELECT count(*) AS n FROM coupon_issues WHERE status = 'ISSUED'").await;
    let events = count(&env, "SELECT count(*) AS n FROM outbox WHERE event_type = 'COUPON_CANCELLED'").await;
    let mut row = Row {
        scenario: "kill -9 scheduler mid job",
        load: format!("{N} expired reservations, batches of 100, killed at {at_kill}"),
        acknowledged: N,
        committed: done,
        lost: N - issued,
        oversold: events - done,
        recovery,
        ..Row::default()
    };
    row.failure = (done != N || issued != N || events != N)
        .then(|| format!("{done} expired, {issued} coupons free, {events} coupon.cancelled, for {N}"));
    row
}

/// The broker stopped for 30 s while the API issues: every coupon's event published once.
async fn broker_down(_: TestEnv) -> Row {
    const PER_PHASE: i64 = 500;
    let (mut broker, env) = coupon_e2e::private_broker().await;
    let env = env.set("LOG_LEVEL", "error");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let api = api_server(&env, port).await;
    let worker = event_worker(&env).await;
    let client = coupon_e2e::client();
    let policy = create_policy(&client, &base, policy_body("DOWNLOAD", None, 1)).await;
    let mut acknowledged = 0;
    let mut issue = async |users: std::ops::RangeInclusive<i64>| {
        for user in users {
            if coupon_e2e::download(&client, &base, user, json!({"couponPolicyId": policy, "userId": user}))
                .await
                .0
                == 201
            {
                acknowledged += 1;
            }
        }
    };
    issue(1..=PER_PHASE).await;
    broker.kill().await;
    let down = Instant::now();
    issue(PER_PHASE + 1..=2 * PER_PHASE).await;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down.elapsed())).await;
    broker.resume().await;
    let resumed = Instant::now();
    let unpublished = "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL";
    let left = count_until(&env, unpublished, 0, Duration::from_secs(120)).await;
    let recovery = resumed.elapsed();
    let committed = count(&env, "SELECT count(*) AS n FROM coupon_issues").await;
    let topic = env.settings().kafka.topics.coupon_issued;
    let published =
        records(&env, &topic, usize::try_from(committed).unwrap_or(0), Duration::from_secs(30)).await;
    let ids: HashSet<String> =
        published.iter().filter_map(|p| p.value["eventId"].as_str().map(str::to_owned)).collect();
    api.terminate().await;
    worker.terminate().await;
    let distinct = i64::try_from(ids.len()).unwrap_or(0);
    let on_topic = i64::try_from(published.len()).unwrap_or(0);
    let mut row = Row {
        scenario: "broker stopped 30 s",
        load: format!("{} downloads, half while the broker is down", 2 * PER_PHASE),
        acknowledged,
        committed,
        lost: committed - distinct,
        oversold: on_topic - distinct,
        stalled: left,
        recovery: Some(recovery),
        ..Row::default()
    };
    row.failure = (acknowledged != 2 * PER_PHASE || distinct != committed || on_topic != distinct || left != 0)
        .then(|| format!("{acknowledged} acknowledged, {committed} coupons, {on_topic} events ({distinct} distinct), {left} unpublished"));
    row
}

/// 1,000 valid payments, each behind a hostile record on its partition, through a release
/// event-worker: every valid one applied once, every hostile one dead-lettered, every offset
/// committed.
async fn hostile_records(env: TestEnv) -> Row {
    const N: i64 = 1_000;
    let coupons = reservations(&env, N, "now() + interval '1 hour'").await;
    let worker = event_worker(&env).await;
    let topics = env.settings().kafka.topics;
    let topic = topics.payment_completed.clone();
    // The worker creates the topics once connected.
    let mut producer = loop {
        if coupon_e2e::topic_exists(&env, &topic).await {
            break Producer::connect(&env).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let started = Instant::now();
    let mut hostile = 0;
    for k in 1..=N {
        let coupon = coupons[&k];
        let key = coupon.to_string();
        let partition = producer.partition_of(&topic, &key).await;
        let payment = |event_id: String, user: serde_json::Value, order: String| {
            json!({"eventId": event_id, "eventType": "PAYMENT_COMPLETED",
                   "data": {"paymentId": format!("PAY-{k}"), "orderId": order, "userId": user,
                            "couponId": coupon, "reservationId": format!("S{k}")}})
            .to_string()
            .into_bytes()
        };
        let bad: (Option<Vec<u8>>, Vec<u8>) = match k % 10 {
            0 => (
                Some("k".repeat(150 + usize::try_from(k).unwrap_or(0)).into_bytes()),
                payment(format!("h{k}"), json!(k + 1), format!("O-S{k}")),
            ),
            1 => (Some(vec![0xff, 0xfe]), vec![0xc3, 0x28, 0x00]),
            2 => (Some(key.clone().into_bytes()), payment("e".repeat(101), json!(k), format!("O-S{k}"))),
            3 => (None, payment(format!("h\u{0}{k}"), json!(k), format!("O-S{k}"))),
            4 => (Some(key.clone().into_bytes()), payment(format!("h{k}"), json!(1e300), format!("O-S{k}"))),
            5 => (Some(key.clone().into_bytes()), payment(format!("h{k}"), json!(k), "O-OTHER".into())),
            6 => (Some(key.clone().into_bytes()), vec![b'{'; 300_000]),
            7 => (
                Some(key.clone().into_bytes()),
                br#"{"eventId":"x","eventType":"SOMETHING_ELSE","data":{}}"#.to_vec(),
            ),
            8 => (
                Some(key.clone().into_bytes()),
                payment(format!("h{k}"), json!("not a number"), format!("O-S{k}")),
            ),
            _ => (Some(key.clone().into_bytes()), payment(format!("h{k}"), json!(k), format!("O-S{k}"))),
        };
        // k % 10 == 9 is the same payment under another eventId (a producer's retry): the valid
        // record after it finds the reservation confirmed by this payment and changes nothing.
        if k % 10 != 9 {
            hostile += 1;
        }
        producer.send_raw(&topic, partition, bad.0, bad.1).await;
        let valid = payment(format!("pay-{k}"), json!(k), format!("O-S{k}"));
        producer.send_raw(&topic, partition, Some(key.into_bytes()), valid).await;
    }
    let used = "SELECT count(*) AS n FROM coupon_issues WHERE status = 'USED'";
    let applied = count_until(&env, used, N, Duration::from_secs(120)).await;
    let recovery = started.elapsed();
    let offsets = "SELECT COALESCE(sum(next_offset), 0)::bigint AS n FROM consumer_offsets \
                   WHERE topic LIKE 'payment.completed%'";
    let committed_offsets = count_until(&env, offsets, 2 * N, Duration::from_secs(30)).await;
    let dead = records(
        &env,
        &format!("{topic}.DLQ"),
        usize::try_from(hostile).unwrap_or(0),
        Duration::from_secs(60),
    )
    .await;
    let used_events = count(&env, "SELECT count(*) AS n FROM outbox WHERE event_type = 'COUPON_USED'").await;
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for d in &dead {
        let code = d.value["reason"].as_str().unwrap_or("?").split(':').next().unwrap_or("?").to_owned();
        *reasons.entry(code).or_default() += 1;
    }
    let mut row = Row {
        scenario: "1,000 hostile records among 1,000 payments",
        load: format!("{} records on 3 partitions", 2 * N),
        acknowledged: N,
        committed: applied,
        lost: N - applied,
        oversold: used_events - applied,
        stalled: (2 * N - committed_offsets).max(0),
        recovery: Some(recovery),
        ..Row::default()
    };
    let dead_count = i64::try_from(dead.len()).unwrap_or(0);
    row.failure = if applied != N || used_events != N {
        Some(format!("{applied} applied, {used_events} coupon.used for {N} payments"))
    } else if committed_offsets != 2 * N {
        Some(format!("offsets at {committed_offsets} of {}", 2 * N))
    } else if dead_count != hostile {
        Some(format!("{dead_count} DLQ records for {hostile} hostile records: {reasons:?}"))
    } else {
        None
    };
    worker.terminate().await;
    row
}

/// The hostile-input table (`coupon_e2e::hostile_input`) against a release api-server: no 5xx,
/// every refusal in the SPEC §5 shape.
async fn hostile_http(env: TestEnv) -> Row {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let api = api_server(&env, port).await;
    let client = coupon_e2e::client();
    let policy = create_policy(&client, &base, policy_body("DOWNLOAD", Some(1000), 5)).await;
    let coupon = coupon_e2e::coupon(&client, &base, policy, 1).await;
    let calls = coupon_e2e::hostile_input::hostile_calls(policy, coupon);
    let mut bad = Vec::new();
    for call in &calls {
        let (status, body) = call.send(&client, &base).await;
        if !coupon_e2e::hostile_input::well_formed(status, &body) {
            bad.push(format!("{} {} ({}) -> {status}", call.method, call.path, call.what));
        }
    }
    api.terminate().await;
    let mut row = Row {
        scenario: "hostile values in every request field",
        load: format!("{} requests", calls.len()),
        ..Row::default()
    };
    row.failure = (!bad.is_empty()).then(|| {
        format!("{} bad answers: {}", bad.len(), bad.iter().take(3).cloned().collect::<Vec<_>>().join("; "))
    });
    row
}

/// schemathesis `--checks all`, 100 examples per operation, against a release api-server: zero
/// failures (SPEC §10). `deploy/local/schemathesis.toml` lists the operations whose cross-field
/// rules may answer 400 to a schema-valid request. `use_after_free` is left out: no DELETE of this
/// API removes a resource (a deactivated policy and a released reservation stay readable, SPEC §5).
async fn schemathesis(env: TestEnv) -> Row {
    let port = free_port();
    let api = api_server(&env, port).await;
    let config = std::env::var("FAULT_SCHEMATHESIS_CONFIG")
        .unwrap_or_else(|_| "deploy/local/schemathesis.toml".into());
    let admin = format!("Authorization: Bearer {}", coupon_testkit::ADMIN_TOKEN);
    let output = tokio::process::Command::new("schemathesis")
        .args(["--config-file", &config, "run", &format!("http://127.0.0.1:{port}/api-docs/openapi.json")])
        .args(["--checks", "all", "--exclude-checks", "use_after_free", "--max-examples", "100"])
        .args(["-H", &admin, "-H", "X-User-Id: 1", "--no-color"])
        .output()
        .await
        .expect("schemathesis (pip install 'schemathesis>=4,<5')");
    api.terminate().await;
    let text = String::from_utf8_lossy(&output.stdout);
    let summary =
        text.lines().rev().find(|l| l.contains("generated")).unwrap_or("no summary").trim().to_owned();
    let mut row = Row { scenario: "schemathesis --checks all", load: summary, ..Row::default() };
    if !output.status.success() {
        let failures: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with("- ST")).collect();
        row.failure = Some(failures.join("; "));
    }
    row
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let all = [
        "api-kill",
        "worker-kill",
        "scheduler-kill",
        "redis-flush",
        "redis-down",
        "postgres-restart",
        "broker-down",
        "hostile-records",
        "hostile-http",
        "schemathesis",
    ];
    let chosen: Vec<&str> =
        all.iter().copied().filter(|s| wanted.is_empty() || wanted.iter().any(|w| w == s)).collect();
    say(
        "| scenario | load | acknowledged | committed | lost | oversold | leaked stock | stalled partitions | recovery | verdict",
    );
    say("|---|---|---|---|---|---|---|---|---|---|");
    let (mut passed, mut failed) = (0, 0);
    for scenario in chosen {
        let env = TestEnv::new().await.set("LOG_LEVEL", "error");
        let row = match scenario {
            "api-kill" => api_kill(env).await,
            "worker-kill" => worker_kill(env).await,
            "scheduler-kill" => scheduler_kill(env).await,
            "broker-down" => broker_down(env).await,
            "redis-flush" => redis_flush(env).await,
            "redis-down" => redis_down(env).await,
            "postgres-restart" => postgres_restart(env).await,
            "hostile-records" => hostile_records(env).await,
            "hostile-http" => hostile_http(env).await,
            _ => schemathesis(env).await,
        };
        row.print();
        if row.failure.is_some() {
            failed += 1;
        } else {
            passed += 1;
        }
    }
    say(&format!("{passed} passed, {failed} failed"));
    if failed > 0 {
        std::process::exit(1);
    }
}
