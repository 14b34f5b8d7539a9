//! Helpers of the black-box tests (the library of this test-only package): start api-servers and
//! event-workers in-process, call them as a client would, and look at the rows they leave and the
//! records they publish.

pub mod hostile_input;

use coupon_domain::clock::{Clock, SystemClock};
use std::time::Duration;

use coupon_testkit::{ADMIN_TOKEN, TestEnv};
use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};

/// A fresh environment with the rate limits on, at `per_minute` and `per_hour` issuing requests
/// per user.
pub async fn rate_limited_env(per_minute: u32, per_hour: u32) -> TestEnv {
    TestEnv::new()
        .await
        .set("COUPON_RATE_LIMIT_ENABLED", "true")
        .set("COUPON_RATE_LIMIT_PER_MINUTE", per_minute.to_string())
        .set("COUPON_RATE_LIMIT_PER_HOUR", per_hour.to_string())
}

/// A running api-server's base URL.
pub fn start_api(env: &TestEnv) -> String {
    let app = api_server::Application::build(env.settings()).expect("api-server builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    base
}

/// An HTTP client that keeps enough connections open for bursts. Idle connections are dropped
/// before the server's keep-alive (5 s) closes them: reusing one just as the server closes it
/// fails the request (`IncompleteMessage`), which a slow step between two bursts made likely.
/// The binary `name` of this build (built by `cargo nextest run --workspace`).
pub fn binary(name: &str) -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(std::path::Path::parent).expect("target directory");
    let binary = dir.join(name);
    assert!(binary.is_file(), "{} is missing: run the tests with --workspace", binary.display());
    binary.to_string_lossy().into_owned()
}

/// The api-server `program` as a process with `env`, listening on `port`, once it is ready.
pub async fn api_process(program: &str, env: &TestEnv, port: u16) -> coupon_testkit::process::Running {
    let mut vars = env.vars.clone();
    vars.insert("HTTP_PORT".into(), port.to_string());
    let running = coupon_testkit::process::Running::spawn(program, &[], &vars);
    let ready = format!("http://127.0.0.1:{port}/health/ready");
    let (status, body) = coupon_testkit::process::wait_for_ready(&ready, Duration::from_secs(30)).await;
    assert_eq!(status, 200, "api-server not ready: {body}");
    running
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .pool_idle_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Status and JSON body of a response.
pub async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// A POST as `user` (`X-User-Id`).
pub async fn post_as(client: &reqwest::Client, url: &str, user: i64, body: Value) -> (u16, Value) {
    answer(client.post(url).header("X-User-Id", user.to_string()).json(&body).send().await.expect("request"))
        .await
}

pub async fn admin_post(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    answer(client.post(url).bearer_auth(ADMIN_TOKEN).json(&body).send().await.expect("request")).await
}

pub async fn admin_patch(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    answer(client.patch(url).bearer_auth(ADMIN_TOKEN).json(&body).send().await.expect("request")).await
}

pub async fn admin_get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    answer(client.get(url).bearer_auth(ADMIN_TOKEN).send().await.expect("request")).await
}

/// A policy body valid now, to adjust per test.
pub fn policy_body(distribution: &str, cap: Option<i64>, per_user: i64) -> Value {
    let now = SystemClock.now();
    json!({
        "couponName": "Black Friday",
        "discountType": "PERCENTAGE",
        "discountValue": 10,
        "maxDiscountAmount": 5000,
        "distributionType": distribution,
        "maxIssueCount": cap,
        "maxIssuePerUser": per_user,
        "validDays": 30,
        "validFrom": (now - chrono::Duration::hours(1)).to_rfc3339(),
        "validUntil": (now + chrono::Duration::days(1)).to_rfc3339(),
    })
}

/// Creates a policy and returns its id.
pub async fn create_policy(client: &reqwest::Client, base: &str, body: Value) -> i64 {
    let (status, created) = admin_post(client, &format!("{base}/api/coupon-policies"), body).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_i64().expect("id")
}

/// `POST /api/coupons/download` as `user`, the raw response (for its headers).
pub async fn download_response(
    client: &reqwest::Client,
    base: &str,
    user: i64,
    body: &Value,
) -> reqwest::Response {
    client
        .post(format!("{base}/api/coupons/download"))
        .header("X-User-Id", user.to_string())
        .json(body)
        .send()
        .await
        .expect("request")
}

/// `POST /api/coupons/download` as `user` for itself.
pub async fn download(client: &reqwest::Client, base: &str, user: i64, body: Value) -> (u16, Value) {
    answer(download_response(client, base, user, &body).await).await
}

/// The statuses of `n` downloads sent one after another.
pub async fn one_after_another(
    client: &reqwest::Client,
    base: &str,
    user: i64,
    body: &Value,
    n: usize,
) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        statuses.push(download(client, base, user, body.clone()).await.0);
    }
    statuses
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A number the database computes (`SELECT … AS n`).
pub async fn count(env: &TestEnv, sql: &str) -> i64 {
    let mut conn = env.database.connect().await;
    diesel::sql_query(sql).get_result::<Count>(&mut conn).await.expect(sql).n
}

/// Deletes every Redis key of this test environment, as a `FLUSHDB` would for it alone. `SCAN`, not
/// `KEYS`: the Redis is shared, and `KEYS` walks the whole keyspace in one blocking call.
pub async fn flush_redis(env: &TestEnv) {
    let settings = env.settings();
    let client = redis::Client::open(format!("redis://{}/", settings.redis.node())).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let pattern = format!("{}*", settings.redis.key_prefix);
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("scan");
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL").arg(keys).query_async(&mut conn).await.expect("del");
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// An event-worker running in this process.
pub struct Worker {
    stop: Box<dyn Fn() + Send + Sync>,
    running: tokio::task::JoinHandle<bool>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("running", &self.running).finish_non_exhaustive()
    }
}

impl Worker {
    /// Stops it as SIGTERM would and checks that it stopped cleanly.
    pub async fn stop(self) {
        (self.stop)();
        let clean = tokio::time::timeout(Duration::from_secs(15), self.running)
            .await
            .expect("the worker stops in time")
            .expect("worker task");
        assert!(clean, "the worker stopped with an error");
    }
}

/// Starts an event-worker (the outbox relay) in this process.
pub fn start_worker(env: &TestEnv) -> Worker {
    let app = event_worker::App::build(env.settings()).expect("worker builds");
    let token = app.shutdown_token();
    let running = tokio::spawn(async move { app.run_until_stopped().await.is_ok() });
    Worker { stop: Box::new(move || token.cancel()), running }
}

/// Downloads one coupon of `policy` for `user`, insists on a 201, and returns the coupon's id.
pub async fn coupon(client: &reqwest::Client, base: &str, policy: i64, user: i64) -> i64 {
    let (status, body) =
        download(client, base, user, json!({"couponPolicyId": policy, "userId": user})).await;
    assert_eq!(status, 201, "user {user}: {body}");
    body["couponId"].as_i64().expect("couponId")
}

/// A client of the test environment's Kafka broker.
pub async fn broker(env: &TestEnv, client_id: &str) -> coupon_events_kafka::broker::Broker {
    let mut config = coupon_wiring::broker_config(&env.settings(), client_id).expect("broker config");
    config.request_timeout = Duration::from_secs(10);
    coupon_events_kafka::broker::Broker::connect(&config).await.expect("broker")
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Published {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub value: Value,
}

/// Every record on `topic` (all its partitions, by partition then offset), read again until at
/// least `n` are there or `limit` has passed.
pub async fn records(env: &TestEnv, topic: &str, n: usize, limit: Duration) -> Vec<Published> {
    use rskafka::client::partition::UnknownTopicHandling;
    let broker = broker(env, "e2e-reader").await;
    let partitions = broker.partitions(topic).await.expect("metadata").unwrap_or(0);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut found = Vec::new();
        for partition in 0..i32::try_from(partitions).expect("partitions") {
            let client = broker
                .client()
                .partition_client(topic, partition, UnknownTopicHandling::Error)
                .await
                .expect("partition client");
            let mut offset = 0;
            loop {
                let (batch, high_watermark) =
                    client.fetch_records(offset, 1..1_000_000, 100).await.expect("fetch");
                for r in &batch {
                    let value = r.record.value.as_deref().map(serde_json::from_slice).transpose();
                    found.push(Published {
                        partition,
                        offset: r.offset,
                        key: String::from_utf8(r.record.key.clone().unwrap_or_default()).expect("utf-8 key"),
                        value: value.expect("JSON value").unwrap_or(Value::Null),
                    });
                }
                match batch.last() {
                    Some(last) if last.offset + 1 < high_watermark => offset = last.offset + 1,
                    _ => break,
                }
            }
        }
        if found.len() >= n || tokio::time::Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Produces records one per produce call, as the payment and order services would, each on the
/// partition Kafka's default partitioner gives its key.
pub struct Producer {
    broker: coupon_events_kafka::broker::Broker,
    clients: std::collections::HashMap<(String, i32), rskafka::client::partition::PartitionClient>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

impl Producer {
    pub async fn connect(env: &TestEnv) -> Self {
        Self { broker: broker(env, "e2e-producer").await, clients: std::collections::HashMap::new() }
    }

    pub async fn send(&mut self, topic: &str, key: &str, value: &str) {
        let partition = self.partition_of(topic, key).await;
        self.send_raw(topic, partition, Some(key.as_bytes().to_vec()), value.as_bytes().to_vec()).await;
    }

    /// The partition Kafka's default partitioner gives `key` on `topic`.
    pub async fn partition_of(&self, topic: &str, key: &str) -> i32 {
        use coupon_events_kafka::relay::default_partition;
        let partitions = self.broker.partitions(topic).await.expect("metadata").expect("the topic exists");
        default_partition(key.as_bytes(), i32::try_from(partitions).expect("partitions"))
    }

    /// Produces any bytes as a record on `partition`.
    pub async fn send_raw(&mut self, topic: &str, partition: i32, key: Option<Vec<u8>>, value: Vec<u8>) {
        use rskafka::client::partition::{Compression, UnknownTopicHandling};
        let client = match self.clients.entry((topic.to_owned(), partition)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(
                self.broker
                    .client()
                    .partition_client(topic, partition, UnknownTopicHandling::Retry)
                    .await
                    .expect("partition client"),
            ),
        };
        let record = rskafka::record::Record {
            key,
            value: Some(value),
            headers: std::collections::BTreeMap::new(),
            timestamp: SystemClock.now(),
        };
        client.produce(vec![record], Compression::NoCompression).await.expect("produce");
    }
}

/// Produces one record on `topic` (see [`Producer`]).
pub async fn produce(env: &TestEnv, topic: &str, key: &str, value: &str) {
    Producer::connect(env).await.send(topic, key, value).await;
}

/// Polls `sql` (a `count(*) AS n`) until it returns `expected` or `limit` passes; returns the last
/// value.
/// Polls `sql` (a count) every 10 ms until it reaches `at_least` or `limit` passes; returns the
/// last count. For progress that may run past the mark between two polls (a kill mid-stream).
pub async fn count_at_least(env: &TestEnv, sql: &str, at_least: i64, limit: Duration) -> i64 {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let n = count(env, sql).await;
        if n >= at_least || tokio::time::Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn count_until(env: &TestEnv, sql: &str, expected: i64, limit: Duration) -> i64 {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let n = count(env, sql).await;
        if n == expected || tokio::time::Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A `payment.completed` record of SPEC §6 for `reservation` of `user` on `coupon`.
pub fn payment_completed(event_id: &str, reservation: &str, coupon: i64, user: i64) -> String {
    json!({
        "eventId": event_id, "eventType": "PAYMENT_COMPLETED", "timestamp": "2026-11-23T10:05:00Z",
        "data": {"paymentId": format!("PAY-{reservation}"), "orderId": format!("O-{reservation}"), "userId": user,
                 "amount": 45_000, "couponId": coupon, "reservationId": reservation, "paymentMethod": "CREDIT_CARD",
                 "completedAt": "2026-11-23T10:05:00"},
        "metadata": {"correlationId": format!("corr-{event_id}"), "source": "payment-service", "version": "1.0"}
    })
    .to_string()
}

/// Reserves `coupon` for `user` under reservation id `rid` (order `O-{rid}`), insisting on 200.
pub async fn reserve(client: &reqwest::Client, base: &str, user: i64, coupon: i64, rid: &str) {
    let body = json!({"reservationId": rid, "userId": user, "couponId": coupon, "orderAmount": 50_000, "orderId": format!("O-{rid}")});
    let response = client
        .post(format!("{base}/api/coupons/reserve"))
        .header("X-User-Id", user.to_string())
        .json(&body)
        .send()
        .await
        .expect("reserve");
    let (status, body) = answer(response).await;
    assert_eq!(status, 200, "{body}");
}

/// Waits until the worker has created all its topics: records can be produced then.
pub async fn wait_for_ready_worker(env: &TestEnv) {
    let topics = env.settings().kafka.topics.all_with_dlq();
    for _ in 0..100 {
        let mut missing = None;
        for topic in &topics {
            if !topic_exists(env, topic).await {
                missing = Some(topic);
                break;
            }
        }
        if missing.is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the worker never created all of {topics:?}");
}

/// Whether `topic` exists on the broker.
pub async fn topic_exists(env: &TestEnv, topic: &str) -> bool {
    broker(env, "e2e-probe").await.partitions(topic).await.expect("metadata").is_some()
}

/// A broker of the test's own (for tests that stop it) and an environment pointed at it, with
/// Kafka requests that time out after 2 s.
pub async fn private_broker() -> (coupon_testkit::broker::PrivateBroker, TestEnv) {
    let broker = coupon_testkit::broker::PrivateBroker::start().await;
    let env = TestEnv::new()
        .await
        .set("KAFKA_BOOTSTRAP_SERVERS", broker.address())
        .set("KAFKA_REQUEST_TIMEOUT", "2");
    (broker, env)
}
