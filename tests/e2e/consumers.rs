//! The payment and order consumers as the other services drive them: records produced on the
//! real broker, effects checked in PostgreSQL and on the produced topics.

use std::time::Duration;

use coupon_e2e::*;
use coupon_testkit::TestEnv;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};

async fn status_of(env: &TestEnv, coupon: i64, status: &str) -> i64 {
    count_until(
        env,
        &format!("SELECT count(*) AS n FROM coupon_issues WHERE id = {coupon} AND status = '{status}'"),
        1,
        Duration::from_secs(20),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_and_cancellations_apply_once_and_what_cannot_be_applied_goes_to_the_dlq() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let worker = start_worker(&env);
    let topics = env.settings().kafka.topics;
    let policy = create_policy(&client, &base, policy_body("DOWNLOAD", None, 1)).await;
    let mut coupons = Vec::new();
    for user in 1..=3 {
        let id = coupon(&client, &base, policy, user).await;
        reserve(&client, &base, user, id, &format!("R{user}")).await;
        coupons.push(id);
    }
    // The topics exist once the worker is connected.
    wait_for_ready_worker(&env).await;

    let paid = payment_completed("e1", "R1", coupons[0], 1);
    produce(&env, &topics.payment_completed, &coupons[0].to_string(), &paid).await;
    produce(&env, &topics.payment_completed, &coupons[0].to_string(), &paid).await;
    let failed = json!({"eventId": "e2", "eventType": "PAYMENT_FAILED",
        "data": {"paymentId": "PAY-R2", "orderId": "O-R2", "userId": 2, "couponId": coupons[1], "reservationId": "R2",
                 "failureReason": "INSUFFICIENT_BALANCE"}});
    produce(&env, &topics.payment_failed, &coupons[1].to_string(), &failed.to_string()).await;
    assert_eq!(status_of(&env, coupons[0], "USED").await, 1, "payment.completed confirms");
    assert_eq!(status_of(&env, coupons[1], "ISSUED").await, 1, "payment.failed releases");

    let cancelled = json!({"eventId": "e3", "eventType": "ORDER_CANCELLED",
        "data": {"orderId": "O-R1", "userId": 1, "couponId": coupons[0], "cancelReason": "CUSTOMER_REQUEST"}});
    produce(&env, &topics.order_cancelled, &coupons[0].to_string(), &cancelled.to_string()).await;
    assert_eq!(status_of(&env, coupons[0], "ISSUED").await, 1, "order.cancelled restores the used coupon");

    // Poison, an unknown reservation, a major version this service cannot read, then a good
    // record behind them on the same partition.
    let key = coupons[2].to_string();
    produce(&env, &topics.payment_completed, &key, "{not json").await;
    produce(&env, &topics.payment_completed, &key, &payment_completed("e4", "NOPE", coupons[2], 3)).await;
    let mut future: Value =
        serde_json::from_str(&payment_completed("e6", "R3", coupons[2], 3)).expect("json");
    future["metadata"]["version"] = json!("2.0");
    produce(&env, &topics.payment_completed, &key, &future.to_string()).await;
    produce(&env, &topics.payment_completed, &key, &payment_completed("e5", "R3", coupons[2], 3)).await;
    assert_eq!(status_of(&env, coupons[2], "USED").await, 1, "records behind the bad ones still apply");

    let dlq = format!("{}.DLQ", topics.payment_completed);
    let dead = records(&env, &dlq, 3, Duration::from_secs(20)).await;
    let mut reasons: Vec<&str> =
        dead.iter().map(|d| d.value["reason"].as_str().unwrap_or_default()).collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["MALFORMED_JSON", "RESERVATION_NOT_FOUND", "UNSUPPORTED_VERSION"], "{dead:?}");
    let poison = dead.iter().find(|d| d.value["reason"] == "MALFORMED_JSON").expect("poison");
    assert_eq!(poison.value["value"], "{not json", "the DLQ keeps the raw record");
    assert_eq!(poison.value["originalTopic"], Value::from(topics.payment_completed.clone()));

    let used = records(&env, &topics.coupon_used, 2, Duration::from_secs(20)).await;
    assert_eq!(used.len(), 2, "one coupon.used per confirmation, none for the duplicate: {used:?}");
    assert_eq!(
        used.iter().find(|u| u.key == coupons[0].to_string()).expect("used").value["metadata"]["correlationId"],
        "corr-e1",
        "the event's correlation id follows the payment"
    );
    assert_eq!(count(&env, "SELECT count(*) AS n FROM processed_events").await, 5, "e1..e5, each once");
    worker.stop().await;
}

/// SPEC §10: dedupe records are pruned after `WORKER_DEDUPE_RETENTION`; younger ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedupe_records_older_than_the_retention_are_pruned() {
    let env = TestEnv::new().await.set("WORKER_DEDUPE_RETENTION", "1");
    let mut conn = env.database.connect().await;
    diesel::sql_query(
        "INSERT INTO processed_events (topic, event_id, partition, record_offset, outcome, processed_at) \
         SELECT 'payments', 'e' || n, 0, n, 'APPLIED', now() - (n || ' hours')::interval \
         FROM generate_series(1, 48) n",
    )
    .execute(&mut conn)
    .await
    .expect("dedupe rows");
    let worker = start_worker(&env);
    let kept = "SELECT count(*) AS n FROM processed_events";
    assert_eq!(count_until(&env, kept, 23, Duration::from_secs(20)).await, 23, "rows of the last day stay");
    assert_eq!(
        count(
            &env,
            "SELECT count(*) AS n FROM processed_events WHERE processed_at < now() - interval '1 day'"
        )
        .await,
        0
    );
    worker.stop().await;
}

/// A record's key, its value, and the DLQ reason it must get.
type Hostile = (Option<Vec<u8>>, Vec<u8>, &'static str);

/// SPEC §10: whatever a record holds (a key too long for any column, bytes that are not UTF-8,
/// NUL, ids over their bounds, numbers too big, a payment for another user), it goes to the DLQ
/// with its key and value kept, and the valid payment behind it on the same partition is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_record_stalls_its_partition() {
    let env = TestEnv::new().await;
    let coupons = reserved(&env, 2).await;
    let worker = start_worker(&env);
    wait_for_ready_worker(&env).await;
    let topic = env.settings().kafka.topics.payment_completed;
    let mut producer = Producer::connect(&env).await;
    let key = coupons[0].to_string();
    let partition = producer.partition_of(&topic, &key).await;
    let long_key = "k".repeat(150);
    let payment = |event_id: &str, user: Value| {
        json!({"eventId": event_id, "eventType": "PAYMENT_COMPLETED",
               "data": {"paymentId": "PAY-S2", "orderId": "O-S2", "userId": user, "couponId": coupons[1],
                        "reservationId": "S2"}})
        .to_string()
        .into_bytes()
    };
    let hostile: [Hostile; 7] = [
        (Some(long_key.into_bytes()), payment("h1", json!(99)), "PAYMENT_MISMATCH"),
        (Some(vec![0xff, 0xfe, 0x00]), vec![0xc3, 0x28, 0x00, 0xff], "MALFORMED_JSON"),
        (Some(key.clone().into_bytes()), payment(&"e".repeat(101), json!(2)), "INVALID_EVENT"),
        (None, payment("h\u{0}4", json!(2)), "INVALID_EVENT"),
        (Some(key.clone().into_bytes()), payment("h5", json!(1e300)), "INVALID_EVENT"),
        (Some(key.clone().into_bytes()), payment("h6", json!("2")), "INVALID_EVENT"),
        (Some(b"k\0".to_vec()), b"\"just a string\"".to_vec(), "MALFORMED_JSON"),
    ];
    for (k, v, _) in &hostile {
        producer.send_raw(&topic, partition, k.clone(), v.clone()).await;
    }
    let good = payment_completed("ok", "S1", coupons[0], 1).into_bytes();
    producer.send_raw(&topic, partition, Some(key.into_bytes()), good).await;
    assert_eq!(
        status_of(&env, coupons[0], "USED").await,
        1,
        "the payment behind the hostile records applies"
    );
    let other =
        format!("SELECT count(*) AS n FROM coupon_issues WHERE id = {} AND status = 'RESERVED'", coupons[1]);
    assert_eq!(count(&env, &other).await, 1, "the payment for another user changed nothing");
    let offsets = format!(
        "SELECT next_offset AS n FROM consumer_offsets WHERE topic = '{topic}' AND partition = {partition}"
    );
    assert_eq!(count(&env, &offsets).await, 8, "every record committed");

    let dead = records(&env, &format!("{topic}.DLQ"), hostile.len(), Duration::from_secs(20)).await;
    let mut dead: Vec<&Value> = dead.iter().map(|d| &d.value).collect();
    dead.sort_by_key(|d| d["offset"].as_i64());
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap_or_default()).collect();
    let expected: Vec<&str> = hostile.iter().map(|(_, _, reason)| *reason).collect();
    assert_eq!(reasons, expected);
    let decode = |d: &Value, field: &str| -> Vec<u8> {
        use base64::Engine;
        let text = d[field].as_str().expect("kept");
        match d[format!("{field}Encoding").as_str()].as_str() {
            Some("BASE64") => base64::engine::general_purpose::STANDARD.decode(text).expect("base64"),
            _ => text.as_bytes().to_vec(),
        }
    };
    for (d, (k, v, _)) in dead.iter().zip(&hostile) {
        assert_eq!(&decode(d, "value"), v, "the DLQ keeps the value: {d}");
        match k {
            Some(k) => assert_eq!(&decode(d, "key"), k, "the DLQ keeps the key: {d}"),
            None => assert!(d["key"].is_null(), "{d}"),
        }
    }
    assert_eq!(dead[0]["mismatches"][0], json!({"field": "userId", "expected": "2", "received": "99"}));
    worker.stop().await;
}

/// `coupon.issue-requested` issues one EVENT coupon per eventId; a request for a policy that
/// does not exist, or for a user who already holds the coupon, goes to the DLQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_requests_issue_once_per_event_id() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let worker = start_worker(&env);
    let topics = env.settings().kafka.topics;
    let policy = create_policy(&client, &base, policy_body("EVENT", Some(10), 1)).await;
    wait_for_ready_worker(&env).await;
    let request = |event: &str, policy: i64, user: i64| {
        json!({"eventId": event, "eventType": "COUPON_ISSUE_REQUESTED", "timestamp": "2026-11-23T10:00:00Z",
               "data": {"policyId": policy, "userId": user},
               "metadata": {"correlationId": format!("corr-{event}"), "source": "event-service", "version": "1.0"}})
        .to_string()
    };
    let mut producer = Producer::connect(&env).await;
    let topic = &topics.coupon_issue_requested;
    for (event, policy, user) in
        [("q1", policy, 5), ("q1", policy, 5), ("q2", policy, 6), ("q3", 999_999, 7), ("q4", policy, 5)]
    {
        producer.send(topic, &user.to_string(), &request(event, policy, user)).await;
    }
    let issued = "SELECT count(*) AS n FROM coupon_issues";
    assert_eq!(count_until(&env, issued, 2, Duration::from_secs(20)).await, 2, "q1 once, q2");
    let dead = records(&env, &format!("{topic}.DLQ"), 2, Duration::from_secs(20)).await;
    let mut reasons: Vec<&str> =
        dead.iter().map(|d| d.value["reason"].as_str().unwrap_or_default()).collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["COUPON_ALREADY_ISSUED", "POLICY_NOT_FOUND"]);
    assert_eq!(count(&env, issued).await, 2);
    let events = records(&env, &topics.coupon_issued, 2, Duration::from_secs(20)).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|e| e.value["data"]["issueType"] == "EVENT"), "{events:?}");
    assert_eq!(
        count(
            &env,
            &format!("SELECT current_issue_count::bigint AS n FROM coupon_policies WHERE id = {policy}")
        )
        .await,
        2,
        "the counter counts them"
    );
    worker.stop().await;
}

/// `n` coupons of users `1..=n`, each RESERVED by its PENDING reservation `S{user}` (arranged with
/// SQL: these tests are about the consumers, not the API). Returns the coupon ids by user.
async fn reserved(env: &TestEnv, n: i64) -> Vec<i64> {
    let mut conn = env.database.connect().await;
    for sql in [
        "INSERT INTO coupon_policies (id, coupon_name, discount_type, discount_value, distribution_type, \
             valid_days, valid_from, valid_until) \
         VALUES (1, 'Stream', 'FIXED_AMOUNT', 1000, 'DOWNLOAD', 30, now() - interval '1 day', now() + interval '1 day')"
            .to_owned(),
        format!(
            "WITH c AS (INSERT INTO coupon_issues (policy_id, user_id, status, reservation_id, reserved_at, issued_at, expires_at) \
                        SELECT 1, u, 'RESERVED', 'S' || u, now(), now() - interval '1 hour', now() + interval '30 days' \
                        FROM generate_series(1, {n}) u RETURNING id, user_id, reservation_id) \
             INSERT INTO coupon_reservations (reservation_id, coupon_id, user_id, order_id, order_amount, discount_amount, \
                                              status, reserved_at, expires_at, created_at, updated_at) \
             SELECT reservation_id, id, user_id, 'O-' || reservation_id, 50000, 1000, 'PENDING', now(), \
                    now() + interval '1 hour', now(), now() FROM c"
        ),
    ] {
        diesel::sql_query(sql).execute(&mut conn).await.expect("test data");
    }
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    let ids: Vec<Id> = diesel::sql_query("SELECT id FROM coupon_issues ORDER BY user_id")
        .load(&mut conn)
        .await
        .expect("ids");
    ids.into_iter().map(|row| row.id).collect()
}

/// Produces the payment.completed of reservations `S{first}..=S{last}`, one record per produce
/// call, from eight producers at once (each reservation has its own coupon and key, so their
/// relative order does not matter).
async fn pay(env: &TestEnv, coupons: &[i64], first: i64, last: i64) {
    const PRODUCERS: i64 = 8;
    let topic = env.settings().kafka.topics.payment_completed;
    let tasks: Vec<_> = (0..PRODUCERS)
        .map(|lane| {
            let (env, topic, coupons) =
                (env.clone_with("LOG_LEVEL", "warn"), topic.clone(), coupons.to_vec());
            tokio::spawn(async move {
                let mut producer = Producer::connect(&env).await;
                for user in (first..=last).filter(|u| u % PRODUCERS == lane) {
                    let coupon = coupons[usize::try_from(user - 1).expect("index")];
                    let value = payment_completed(&format!("pay-{user}"), &format!("S{user}"), coupon, user);
                    producer.send(&topic, &coupon.to_string(), &value).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("producer");
    }
}

const CONFIRMED: &str = "SELECT count(*) AS n FROM coupon_reservations WHERE status = 'CONFIRMED'";

/// Exactly once across a hand-over: every reservation confirmed, one effect, one coupon.used and
/// one dedupe row each, and the stored offsets add up to the records produced.
async fn assert_each_applied_once(env: &TestEnv, n: i64) {
    for (sql, what) in [
        ("SELECT count(*) AS n FROM coupon_issues WHERE status = 'USED'", "used coupons"),
        ("SELECT count(*) AS n FROM outbox WHERE event_type = 'COUPON_USED'", "coupon.used rows"),
        ("SELECT count(*) AS n FROM processed_events", "dedupe rows"),
        ("SELECT COALESCE(sum(next_offset), 0)::bigint AS n FROM consumer_offsets", "offsets"),
    ] {
        assert_eq!(count(env, sql).await, n, "{what}");
    }
}

/// The broker crashes under a consuming worker and stays down for 15 s: the partition tasks fail,
/// wait and retry; once it is back, the payments produced before and after the outage are each
/// applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_ride_out_a_broker_outage_and_apply_every_payment_once() {
    let (mut broker, env) = private_broker().await;
    let coupons = reserved(&env, 200).await;
    let worker = start_worker(&env);
    wait_for_ready_worker(&env).await;
    pay(&env, &coupons, 1, 100).await;
    assert_eq!(count_until(&env, CONFIRMED, 100, Duration::from_secs(30)).await, 100, "before the outage");

    broker.kill().await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    broker.resume().await;
    pay(&env, &coupons, 101, 200).await;
    assert_eq!(count_until(&env, CONFIRMED, 200, Duration::from_secs(60)).await, 200, "after the outage");
    assert_each_applied_once(&env, 200).await;
    worker.stop().await;
}

/// Two workers share the three partitions; one stops, and the other takes its partitions over
/// and finishes the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_partitions_and_one_takes_over_when_the_other_stops() {
    let env = TestEnv::new().await.set("WORKER_LEASE_PERIOD", "3");
    let coupons = reserved(&env, 300).await;
    let first = start_worker(&env);
    wait_for_ready_worker(&env).await;
    let second = start_worker(&env);
    let holders = "SELECT count(DISTINCT holder) AS n FROM worker_leases WHERE name LIKE 'consume:%' AND expires_at > now()";
    assert_eq!(
        count_until(&env, holders, 2, Duration::from_secs(20)).await,
        2,
        "both workers own partitions"
    );

    pay(&env, &coupons, 1, 150).await;
    assert_eq!(count_until(&env, CONFIRMED, 150, Duration::from_secs(30)).await, 150);
    second.stop().await;
    pay(&env, &coupons, 151, 300).await;
    assert_eq!(
        count_until(&env, CONFIRMED, 300, Duration::from_secs(30)).await,
        300,
        "the survivor finished"
    );
    let owned = "SELECT count(*) AS n FROM worker_leases WHERE name LIKE 'consume:%' AND expires_at > now()";
    // The payments can finish before the survivor's next tick has taken the idle topics'
    // partitions too; a dead pod's partitions must be taken over within 10 s.
    assert_eq!(
        count_until(&env, owned, 12, Duration::from_secs(10)).await,
        12,
        "one worker holds all twelve partitions of the four topics"
    );
    assert_each_applied_once(&env, 300).await;
    first.stop().await;
}

/// The real binary, killed with SIGKILL while 5,000 payments stream in, then started again:
/// every reservation is confirmed exactly once and the offsets are right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_stream_loses_and_doubles_nothing() {
    let env = TestEnv::new().await.set("WORKER_LEASE_PERIOD", "3").set("WORKER_ADMIN_PORT", "0");
    let coupons = reserved(&env, 5_000).await;
    let binary = binary("event-worker");
    let mut worker = coupon_testkit::process::Running::spawn(&binary, &[], &env.vars);
    wait_for_ready_worker(&env).await;
    let producing = {
        let (env, coupons) = (env.clone_with("LOG_LEVEL", "warn"), coupons.clone());
        tokio::spawn(async move { pay(&env, &coupons, 1, 5_000).await })
    };
    let midway = count_at_least(&env, CONFIRMED, 1_500, Duration::from_secs(60)).await;
    assert!((1_500..5_000).contains(&midway), "killed mid-stream: {midway}");
    worker.kill().await;
    let at_kill = count(&env, CONFIRMED).await;
    assert!(at_kill < 5_000, "the restarted worker has work left: {at_kill}");
    let mut restarted = coupon_testkit::process::Running::spawn(&binary, &[], &env.vars);
    producing.await.expect("producer");
    assert_eq!(
        count_until(&env, CONFIRMED, 5_000, Duration::from_secs(120)).await,
        5_000,
        "killed at {at_kill}"
    );
    assert_each_applied_once(&env, 5_000).await;
    restarted.terminate().await;
    assert!(restarted.exit_status(Duration::from_secs(15)).await.success());
}

/// `event-worker dlq`: a payment for a reservation that did not exist yet is dead-lettered; once
/// the reservation exists, `list` shows the letter and `replay` makes the consumers apply it.
/// An api-server and a worker, coupon `id` of user 1, and a payment of it for the reservation
/// `reservation`, which does not exist yet: dead-lettered `RESERVATION_NOT_FOUND` (event `early`).
async fn dead_lettered_payment(reservation: &str) -> (TestEnv, String, reqwest::Client, Worker, i64) {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let worker = start_worker(&env);
    let topics = env.settings().kafka.topics.clone();
    let policy = create_policy(&client, &base, policy_body("DOWNLOAD", None, 1)).await;
    let id = coupon(&client, &base, policy, 1).await;
    wait_for_ready_worker(&env).await;
    let payment = payment_completed("early", reservation, id, 1);
    produce(&env, &topics.payment_completed, &id.to_string(), &payment).await;
    let dlq_topic = format!("{}.DLQ", topics.payment_completed);
    assert_eq!(records(&env, &dlq_topic, 1, Duration::from_secs(20)).await.len(), 1);
    (env, base, client, worker, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_payment_is_listed_and_replayed_once_its_cause_is_fixed() {
    use event_worker::dlq::{self, Filter, Selection};
    let (env, base, client, _worker, id) = dead_lettered_payment("R-EARLY").await;
    let settings = env.settings();
    let topics = settings.kafka.topics.clone();

    let filter = Filter { topic: None, reason: Some("RESERVATION_NOT_FOUND".into()) };
    let letters = dlq::list(&settings, &filter).await.expect("list");
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(
        (letter.original_topic.as_str(), letter.reason.as_str()),
        (topics.payment_completed.as_str(), "RESERVATION_NOT_FOUND")
    );
    let other = Filter { topic: None, reason: Some("PAYMENT_MISMATCH".into()) };
    assert!(dlq::list(&settings, &other).await.expect("list").is_empty());

    reserve(&client, &base, 1, id, "R-EARLY").await;
    let record = Selection::Record {
        topic: letter.original_topic.clone(),
        partition: letter.partition,
        offset: letter.offset,
    };
    let replayed = dlq::replay(&settings, &record).await.expect("replay");
    assert_eq!(replayed.len(), 1);
    let used = format!("SELECT count(*) AS n FROM coupon_issues WHERE id = {id} AND status = 'USED'");
    assert_eq!(
        count_until(&env, &used, 1, Duration::from_secs(20)).await,
        1,
        "the replayed payment confirms"
    );
    let missing = Selection::Record {
        topic: letter.original_topic.clone(),
        partition: letter.partition,
        offset: 999_999,
    };
    assert!(dlq::replay(&settings, &missing).await.is_err(), "no such letter");
}

/// The same over the admin API, as the console uses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letters_are_listed_and_replayed_over_http() {
    let (env, base, client, _worker, id) = dead_lettered_payment("R-HTTP").await;
    let topics = env.settings().kafka.topics.clone();

    let (status, listed) =
        admin_get(&client, &format!("{base}/api/admin/dlq?reason=RESERVATION_NOT_FOUND")).await;
    assert_eq!(status, 200, "{listed}");
    let letters = listed["letters"].as_array().expect("letters");
    assert_eq!(letters.len(), 1, "{listed}");
    let letter = &letters[0];
    assert_eq!(
        (
            letter["topic"].as_str(),
            letter["reason"].as_str(),
            letter["eventId"].as_str(),
            letter["replayable"].as_bool()
        ),
        (Some(topics.payment_completed.as_str()), Some("RESERVATION_NOT_FOUND"), Some("early"), Some(true)),
        "{listed}"
    );
    let (_, none) = admin_get(&client, &format!("{base}/api/admin/dlq?reason=PAYMENT_MISMATCH")).await;
    assert_eq!(none, json!({"letters": []}));

    reserve(&client, &base, 1, id, "R-HTTP").await;
    let replay_url = format!("{base}/api/admin/dlq/replay");
    let record =
        json!({"topic": letter["topic"], "partition": letter["partition"], "offset": letter["offset"]});
    let (status, replayed) = admin_post(&client, &replay_url, record).await;
    assert_eq!(status, 200, "{replayed}");
    assert!(
        replayed["newOffset"].as_i64().is_some_and(|o| o > letter["offset"].as_i64().unwrap_or(0)),
        "{replayed}"
    );
    let used = format!("SELECT count(*) AS n FROM coupon_issues WHERE id = {id} AND status = 'USED'");
    assert_eq!(
        count_until(&env, &used, 1, Duration::from_secs(20)).await,
        1,
        "the replayed payment confirms"
    );

    let missing = json!({"topic": letter["topic"], "partition": letter["partition"], "offset": 999_999});
    let (status, refused) = admin_post(&client, &replay_url, missing).await;
    assert_eq!((status, refused["code"].as_str()), (404, Some("NOT_FOUND")), "{refused}");
    // A schema-valid integer may be written with a zero fraction (schemathesis sends them, SPEC
    // §10): looked up like the others.
    let partition = letter["partition"].as_i64().expect("partition");
    let written = format!(r#"{{"topic":{},"partition":{partition}.0,"offset":999999.0}}"#, letter["topic"]);
    let (status, refused) =
        admin_post(&client, &replay_url, serde_json::from_str(&written).expect("json")).await;
    assert_eq!((status, refused["code"].as_str()), (404, Some("NOT_FOUND")), "{refused}");
    let beyond = json!({"topic": letter["topic"], "partition": 2_147_483_648_i64, "offset": 0});
    let (status, refused) = admin_post(&client, &replay_url, beyond).await;
    assert_eq!((status, refused["fieldErrors"][0]["field"].as_str()), (400, Some("partition")), "{refused}");
    let (status, refused) = admin_post(&client, &replay_url, json!({"topic": "", "partition": -1})).await;
    let fields: Vec<&str> =
        refused["fieldErrors"].as_array().into_iter().flatten().filter_map(|f| f["field"].as_str()).collect();
    assert_eq!((status, fields), (400, vec!["topic", "partition", "offset"]), "{refused}");
}

/// An api-server and a worker, and two coupons of one DOWNLOAD policy, of users 1 and 2, held by
/// the reservations `holds` (orders `O-{hold}`).
struct Held {
    env: TestEnv,
    base: String,
    client: reqwest::Client,
    worker: Worker,
    coupons: [i64; 2],
}

async fn held(holds: [&str; 2]) -> Held {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let worker = start_worker(&env);
    let policy = create_policy(&client, &base, policy_body("DOWNLOAD", None, 1)).await;
    let mut coupons = [0; 2];
    for (user, hold) in (1..).zip(holds) {
        let id = coupon(&client, &base, policy, user).await;
        reserve(&client, &base, user, id, hold).await;
        coupons[usize::try_from(user - 1).expect("index")] = id;
    }
    Held { env, base, client, worker, coupons }
}

/// SPEC §4.4 over Kafka: a payment that comes after its reservation timed out is honoured while
/// the coupon is still free (a late confirmation), and refused (`RESERVATION_EXPIRED` on the DLQ)
/// once another checkout holds the coupon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_payment_is_honoured_while_the_coupon_is_free_and_dead_lettered_after() {
    let Held { env, base, client, worker, coupons: [free, taken] } = held(["LATE-1", "LATE-2"]).await;
    let topics = env.settings().kafka.topics;
    let mut conn = env.database.connect().await;
    diesel::sql_query(
        "UPDATE coupon_reservations SET reserved_at = now() - interval '2 hours', expires_at = now() - interval '1 hour' \
         WHERE reservation_id IN ('LATE-1', 'LATE-2')",
    )
    .execute(&mut conn)
    .await
    .expect("the holds ran out");
    let (status, run) =
        admin_post(&client, &format!("{base}/api/admin/jobs/reservation-timeout/run"), json!({})).await;
    assert_eq!((status, &run["affected"]), (200, &json!(2)), "{run}");
    reserve(&client, &base, 2, taken, "LATE-3").await;
    wait_for_ready_worker(&env).await;

    produce(&env, &topics.payment_completed, &free.to_string(), &payment_completed("pl1", "LATE-1", free, 1))
        .await;
    produce(
        &env,
        &topics.payment_completed,
        &taken.to_string(),
        &payment_completed("pl2", "LATE-2", taken, 2),
    )
    .await;
    let late = "SELECT count(*) AS n FROM coupon_reservations WHERE reservation_id = 'LATE-1' \
                AND status = 'CONFIRMED' AND late_confirmation";
    assert_eq!(count_until(&env, late, 1, Duration::from_secs(20)).await, 1, "honoured late");
    assert_eq!(status_of(&env, free, "USED").await, 1);
    let dead = records(&env, &format!("{}.DLQ", topics.payment_completed), 1, Duration::from_secs(20)).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].value["reason"], "RESERVATION_EXPIRED");
    assert_eq!(status_of(&env, taken, "RESERVED").await, 1, "the newer hold keeps the coupon");
    worker.stop().await;
}

/// SPEC §6: a record whose effect keeps failing is tried three times, then alone, then goes to the
/// DLQ as `PROCESSING_FAILED` with the error; the record behind it on the partition applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_keeps_failing_is_dead_lettered_as_processing_failed() {
    let Held { env, base: _, client: _, worker, coupons: [failing, fine] } = held(["BOOM-1", "FINE-2"]).await;
    let topics = env.settings().kafka.topics;
    // The database refuses to use this one coupon, as a failing disk or a bug would.
    let mut conn = env.database.connect().await;
    for sql in [
        "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.reservation_id = 'BOOM-1' AND NEW.status = 'USED' THEN RAISE EXCEPTION 'disk on fire'; END IF; \
           RETURN NEW; END $$",
        "CREATE TRIGGER refuse_boom BEFORE UPDATE ON coupon_issues FOR EACH ROW EXECUTE FUNCTION refuse_boom()",
    ] {
        diesel::sql_query(sql).execute(&mut conn).await.expect(sql);
    }
    wait_for_ready_worker(&env).await;
    let mut producer = Producer::connect(&env).await;
    let key = failing.to_string();
    producer.send(&topics.payment_completed, &key, &payment_completed("pb1", "BOOM-1", failing, 1)).await;
    producer.send(&topics.payment_completed, &key, &payment_completed("pb2", "FINE-2", fine, 2)).await;

    let dead = records(&env, &format!("{}.DLQ", topics.payment_completed), 1, Duration::from_secs(30)).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let reason = dead[0].value["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("PROCESSING_FAILED") && reason.contains("disk on fire"), "{reason}");
    let used = format!("SELECT count(*) AS n FROM coupon_issues WHERE id = {fine} AND status = 'USED'");
    assert_eq!(count_until(&env, &used, 1, Duration::from_secs(20)).await, 1, "the record behind it applies");
    assert_eq!(status_of(&env, failing, "RESERVED").await, 1);
    worker.stop().await;
}
