//! The outbox relay as Kafka consumers see it: each API call's event appears once on its topic,
//! in the SPEC §6 envelope, keyed by coupon; a refused call publishes nothing.

use std::collections::HashSet;
use std::time::Duration;

use coupon_e2e::*;
use coupon_testkit::TestEnv;
use serde_json::{Value, json};

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    user: i64,
    correlation: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client
        .request(method, url)
        .header("X-User-Id", user.to_string())
        .header("X-Correlation-Id", correlation);
    if let Some(body) = body {
        request = request.json(&body);
    }
    answer(request.send().await.expect("request")).await
}

/// The one record of `topic` whose key is `coupon`, after checking the envelope.
fn only<'a>(published: &'a [Published], coupon: i64, event_type: &str, correlation: &str) -> &'a Value {
    let mine: Vec<&Published> = published.iter().filter(|p| p.key == coupon.to_string()).collect();
    assert_eq!(mine.len(), 1, "{event_type} of coupon {coupon}: {published:?}");
    let event = &mine[0].value;
    assert_eq!(event["eventType"], event_type, "{event}");
    assert_eq!(event["data"]["couponId"], coupon, "{event}");
    assert_eq!(event["metadata"]["correlationId"], correlation, "{event}");
    assert_eq!(event["metadata"]["source"], "coupon-service", "{event}");
    assert_eq!(
        (&event["metadata"]["version"], &event["metadata"]["compatibleVersions"]),
        (&json!("1.0"), &json!(["1.0"])),
        "{event}"
    );
    assert!(event["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{event}");
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_publishes_its_event_once_in_the_spec_envelope_and_refusals_none() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let worker = start_worker(&env);
    let topics = env.settings().kafka.topics;
    let policy = create_policy(&client, &base, policy_body("DOWNLOAD", None, 1)).await;
    let post = reqwest::Method::POST;

    let mut coupons = Vec::new();
    for user in [7, 8] {
        let (status, body) = call(
            &client,
            post.clone(),
            format!("{base}/api/coupons/download"),
            user,
            &format!("corr-issue-{user}"),
            Some(json!({"couponPolicyId": policy, "userId": user})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        coupons.push(body["couponId"].as_i64().expect("couponId"));
    }
    let hold = |rid: &str, user: i64, coupon: i64| json!({"reservationId": rid, "userId": user, "couponId": coupon, "orderAmount": 50_000, "orderId": format!("O-{rid}")});
    let url = |path: &str| format!("{base}/api/coupons/{path}");
    for (status, body) in [
        call(&client, post.clone(), url("reserve"), 7, "corr-reserve-1", Some(hold("R1", 7, coupons[0])))
            .await,
        call(
            &client,
            post.clone(),
            url("use"),
            7,
            "corr-use-1",
            Some(json!({"reservationId": "R1", "orderId": "O-R1", "paymentId": "P-1"})),
        )
        .await,
        call(&client, post.clone(), url("reserve"), 8, "corr-reserve-2", Some(hold("R2", 8, coupons[1])))
            .await,
        call(&client, reqwest::Method::DELETE, url("reserve/R2"), 8, "corr-release-2", None).await,
    ] {
        assert_eq!(status, 200, "{body}");
    }
    // Refused calls: nothing may be published for them.
    for (status, _) in [
        call(&client, post.clone(), url("reserve"), 7, "corr-refused", Some(hold("R3", 7, 999_999))).await,
        call(&client, post.clone(), url("reserve"), 7, "corr-refused", Some(hold("R4", 7, coupons[0]))).await,
        call(
            &client,
            post.clone(),
            url("use"),
            7,
            "corr-refused",
            Some(json!({"reservationId": "NOPE", "orderId": "O-NOPE"})),
        )
        .await,
        call(
            &client,
            post.clone(),
            url("download"),
            7,
            "corr-refused",
            Some(json!({"couponPolicyId": policy, "userId": 7})),
        )
        .await,
    ] {
        assert!(status >= 400, "{status}");
    }

    let wait = Duration::from_secs(20);
    let issued = records(&env, &topics.coupon_issued, 2, wait).await;
    let reserved = records(&env, &topics.coupon_reserved, 2, wait).await;
    let used = records(&env, &topics.coupon_used, 1, wait).await;
    let cancelled = records(&env, &topics.coupon_cancelled, 1, wait).await;
    // Anything published late would be a duplicate or an event of a refused call.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (topic, seen) in [
        (&topics.coupon_issued, 2),
        (&topics.coupon_reserved, 2),
        (&topics.coupon_used, 1),
        (&topics.coupon_cancelled, 1),
        (&topics.coupon_expired, 0),
    ] {
        assert_eq!(records(&env, topic, seen, Duration::ZERO).await.len(), seen, "{topic}");
    }

    for (user, coupon) in [7, 8].into_iter().zip(coupons.iter().copied()) {
        let event = only(&issued, coupon, "COUPON_ISSUED", &format!("corr-issue-{user}"));
        assert_eq!(event["data"]["issueType"], "DOWNLOAD", "{event}");
        assert_eq!(event["data"]["policyId"], policy, "{event}");
    }
    let event = only(&reserved, coupons[0], "COUPON_RESERVED", "corr-reserve-1");
    assert_eq!(event["data"]["reservationId"], "R1", "{event}");
    let event = only(&used, coupons[0], "COUPON_USED", "corr-use-1");
    for (field, amount) in [("originalAmount", 50_000), ("discountAmount", 5_000), ("finalAmount", 45_000)] {
        assert_eq!(event["data"][field].as_f64(), Some(f64::from(amount)), "{field}: {event}");
    }
    let event = only(&cancelled, coupons[1], "COUPON_CANCELLED", "corr-release-2");
    assert_eq!(event["data"]["reason"], "RESERVATION_RELEASED", "{event}");

    // One coupon's events share a partition, in the order they happened.
    let of_first: Vec<&Published> =
        reserved.iter().chain(&used).filter(|p| p.key == coupons[0].to_string()).collect();
    assert_eq!(of_first[0].partition, of_first[1].partition);
    let ids: HashSet<&str> = [&issued, &reserved, &used, &cancelled]
        .into_iter()
        .flatten()
        .map(|p| p.value["eventId"].as_str().expect("eventId"))
        .collect();
    assert_eq!(ids.len(), 6, "every eventId is unique");
    assert_eq!(count(&env, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL").await, 0);
    worker.stop().await;
}

/// Kafka is not on the request path: with the broker down for 30 s the API keeps answering 201,
/// the events wait in the outbox, and once the broker is back every one is published, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_costs_no_api_errors_and_loses_no_event() {
    let (mut broker, env) = private_broker().await;
    let base = start_api(&env);
    let client = client();
    let worker = start_worker(&env);
    let topic = env.settings().kafka.topics.coupon_issued;
    let policy = create_policy(&client, &base, policy_body("DOWNLOAD", None, 1)).await;

    let mut users = 1..;
    for user in users.by_ref().take(20) {
        coupon(&client, &base, policy, user).await;
    }
    assert_eq!(records(&env, &topic, 20, Duration::from_secs(30)).await.len(), 20, "published while up");

    broker.kill().await;
    let down = tokio::time::Instant::now();
    let mut issued = 20;
    while down.elapsed() < Duration::from_secs(30) {
        coupon(&client, &base, policy, users.next().expect("user")).await;
        issued += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waiting = count(&env, "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL").await;
    assert!(waiting > 0, "the events of the outage wait in the outbox");

    broker.resume().await;
    let published = records(&env, &topic, issued, Duration::from_secs(60)).await;
    let ids: HashSet<&str> =
        published.iter().map(|p| p.value["eventId"].as_str().expect("eventId")).collect();
    assert_eq!(ids.len(), issued, "every coupon.issued arrived");
    assert_eq!(published.len(), issued, "and none twice");
    let unpublished = count_until(
        &env,
        "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL",
        0,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(unpublished, 0, "every row is marked published");
    worker.stop().await;
}

/// Two workers: one relays (the lease holder), and 300 coupons issued at once are each published
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_publish_each_row_once() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let workers = [start_worker(&env), start_worker(&env)];
    let topic = env.settings().kafka.topics.coupon_issued;
    let policy = create_policy(&client, &base, policy_body("DOWNLOAD", None, 1)).await;
    let calls: Vec<_> = (1..=300)
        .map(|user| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                coupon(&client, &base, policy, user).await;
            })
        })
        .collect();
    for call in calls {
        call.await.expect("call");
    }
    let published = records(&env, &topic, 300, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let published_later = records(&env, &topic, 300, Duration::ZERO).await;
    let ids: HashSet<&str> =
        published.iter().map(|p| p.value["eventId"].as_str().expect("eventId")).collect();
    assert_eq!(ids.len(), 300);
    assert_eq!(published_later.len(), 300, "no row was published twice");
    for worker in workers {
        worker.stop().await;
    }
}

/// `coupon.expired` as consumers read it: the expiry job's record says `VALIDITY_PERIOD_EXPIRED`,
/// a deactivation with `expireIssued=true` says `POLICY_DEACTIVATED` from `metadata.source` ADMIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_coupons_are_published_with_their_reason() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let worker = start_worker(&env);
    let topic = env.settings().kafka.topics.coupon_expired;
    let (dated, deactivated) = (
        create_policy(&client, &base, policy_body("DOWNLOAD", None, 1)).await,
        create_policy(&client, &base, policy_body("DOWNLOAD", None, 1)).await,
    );
    let old = coupon(&client, &base, dated, 1).await;
    let dropped = coupon(&client, &base, deactivated, 2).await;
    let past = format!(
        "WITH u AS (UPDATE coupon_issues SET issued_at = now() - interval '2 days', expires_at = now() - interval '1 day' \
                    WHERE id = {old} RETURNING 1) SELECT count(*) AS n FROM u"
    );
    assert_eq!(count(&env, &past).await, 1);
    let (status, _) = admin_post(&client, &format!("{base}/api/admin/jobs/expiry/run"), json!({})).await;
    assert_eq!(status, 200);
    let deleted = client
        .delete(format!("{base}/api/coupon-policies/{deactivated}?expireIssued=true"))
        .bearer_auth(coupon_testkit::ADMIN_TOKEN)
        .header("X-Correlation-Id", "corr-deactivate")
        .send()
        .await
        .expect("request");
    assert_eq!(deleted.status(), 200);

    let published = records(&env, &topic, 2, Duration::from_secs(20)).await;
    let by_date = &published.iter().find(|p| p.key == old.to_string()).expect("the job's event").value;
    assert_eq!(
        (&by_date["eventType"], &by_date["data"]["reason"], &by_date["metadata"]["source"]),
        (&json!("COUPON_EXPIRED"), &json!("VALIDITY_PERIOD_EXPIRED"), &json!("coupon-service")),
        "{by_date}"
    );
    let event =
        &published.iter().find(|p| p.key == dropped.to_string()).expect("the deactivation's event").value;
    assert_eq!(
        (&event["data"]["reason"], &event["metadata"]["source"], &event["metadata"]["correlationId"]),
        (&json!("POLICY_DEACTIVATED"), &json!("ADMIN"), &json!("corr-deactivate")),
        "{event}"
    );
    worker.stop().await;
}
