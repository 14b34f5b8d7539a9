//! What clients see while a dependency is down (SPEC §9): PostgreSQL down is a clean 503, never a
//! 500 or a hang; Redis down only removes the accelerator, and issuing goes on, decided by
//! PostgreSQL alone.

use coupon_e2e::*;
use coupon_testkit::TestEnv;
use coupon_testkit::process::closed_port;
use serde_json::json;

#[tokio::test]
async fn issuing_goes_on_without_redis() {
    let env = TestEnv::new().await;
    let with_redis = start_api(&env);
    let client = client();
    let policy = create_policy(&client, &with_redis, policy_body("FIRST_COME", Some(2), 1)).await;

    // A second instance whose Redis is unreachable (gate and rate limits both down).
    let without = start_api(
        &env.clone_with("REDIS_PORT", closed_port().to_string())
            .set("REDIS_TIMEOUT", "1")
            .set("COUPON_RATE_LIMIT_ENABLED", "true"),
    );
    let mut statuses = Vec::new();
    for user in 1..=3 {
        statuses.push(
            download(&client, &without, user, json!({"couponPolicyId": policy, "userId": user})).await.0,
        );
    }
    assert_eq!(statuses, [201, 201, 410], "PostgreSQL alone still enforces the cap");
    let (status, again) =
        download(&client, &without, 1, json!({"couponPolicyId": policy, "userId": 1})).await;
    assert_eq!((status, again["code"].as_str()), (409, Some("COUPON_ALREADY_ISSUED")));
    assert_eq!(count(&env, "SELECT count(*) AS n FROM coupon_issues").await, 2);
}

#[tokio::test]
async fn a_dead_database_is_a_503_not_a_500() {
    let env = TestEnv::new().await;
    let base =
        start_api(&env.clone_with("DATABASE_PORT", closed_port().to_string()).set("DATABASE_TIMEOUT", "1"));
    let client = client();
    let (status, body) = download(&client, &base, 1, json!({"couponPolicyId": 1, "userId": 1})).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("SERVICE_UNAVAILABLE")), "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(!message.contains("127.0.0.1") && !message.contains("connect"), "no internals leaked: {message}");
    let (status, body) = admin_get(&client, &format!("{base}/api/coupon-policies")).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("SERVICE_UNAVAILABLE")));
}

/// The admin API's dead letters need Kafka; without it they answer 503 naming no internals, and
/// the api-server stays ready (its readiness does not depend on Kafka).
#[tokio::test]
async fn dead_letters_without_kafka_are_a_503_and_the_api_stays_ready() {
    let env = TestEnv::new().await;
    let base = start_api(
        &env.clone_with("KAFKA_BOOTSTRAP_SERVERS", format!("127.0.0.1:{}", closed_port()))
            .set("KAFKA_REQUEST_TIMEOUT", "1"),
    );
    let client = client();
    let (status, body) = admin_get(&client, &format!("{base}/api/admin/dlq")).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("SERVICE_UNAVAILABLE")), "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(!message.contains("127.0.0.1") && message.contains("event broker"), "{message}");
    let ready = client.get(format!("{base}/health/ready")).send().await.expect("ready");
    assert_eq!(ready.status().as_u16(), 200);
}
