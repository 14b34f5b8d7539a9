//! Abuse limits over HTTP: per-user issuing rate (429 with its headers) and the block of callers
//! who guess coupon codes (403 ACCESS_BLOCKED), against the real Redis.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coupon_e2e::*;
use coupon_testkit::TestEnv;
use serde_json::json;

/// Waits for a fresh minute when the current one is about to end, so that a burst of requests
/// falls into one rate window.
async fn clear_of_minute_boundary() {
    let second = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 60;
    if second > 55 {
        tokio::time::sleep(Duration::from_secs(61 - second)).await;
    }
}

#[tokio::test]
async fn the_sixth_issue_request_in_a_minute_is_rate_limited() {
    let env = TestEnv::new().await.set("COUPON_RATE_LIMIT_ENABLED", "true");
    let base = start_api(&env);
    let client = client();
    let policy = create_policy(&client, &base, policy_body("DOWNLOAD", None, 10)).await;
    let body = json!({"couponPolicyId": policy, "userId": 3});
    clear_of_minute_boundary().await;

    for expected_remaining in (0..5).rev() {
        let response = download_response(&client, &base, 3, &body).await;
        assert_eq!(response.status().as_u16(), 201);
        assert_eq!(response.headers()["X-RateLimit-Limit"], "5");
        assert_eq!(response.headers()["X-RateLimit-Remaining"], expected_remaining.to_string().as_str());
    }
    let response = download_response(&client, &base, 3, &body).await;
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 =
        response.headers()["Retry-After"].to_str().ok().and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(response.headers()["X-RateLimit-Remaining"], "0");
    let (_, limited) = answer(response).await;
    assert_eq!(limited["code"], "RATE_LIMITED");
    assert_eq!(count(&env, "SELECT count(*) AS n FROM coupon_issues").await, 5);

    // Another user has their own budget.
    assert_eq!(download(&client, &base, 4, json!({"couponPolicyId": policy, "userId": 4})).await.0, 201);
}

#[tokio::test]
async fn the_hourly_limit_holds_across_minutes() {
    let env = rate_limited_env(100, 3).await;
    let base = start_api(&env);
    let client = client();
    let policy = create_policy(&client, &base, policy_body("DOWNLOAD", None, 10)).await;
    let statuses =
        one_after_another(&client, &base, 8, &json!({"couponPolicyId": policy, "userId": 8}), 4).await;
    assert_eq!(statuses, vec![201, 201, 201, 429]);
}

#[tokio::test]
async fn ten_unknown_codes_block_the_user_and_the_address() {
    let env = rate_limited_env(1000, 1000).await;
    let base = start_api(&env);
    let client = client();
    let mut code_policy = policy_body("CODE", None, 1);
    code_policy["couponCode"] = json!("REAL-CODE");
    create_policy(&client, &base, code_policy).await;

    for attempt in 0..10 {
        let (status, answer) =
            download(&client, &base, 21, json!({"couponCode": format!("GUESS-{attempt}"), "userId": 21}))
                .await;
        assert_eq!((status, answer["code"].as_str()), (404, Some("COUPON_CODE_NOT_FOUND")));
    }
    let (status, blocked) =
        download(&client, &base, 21, json!({"couponCode": "REAL-CODE", "userId": 21})).await;
    assert_eq!(
        (status, blocked["code"].as_str()),
        (403, Some("ACCESS_BLOCKED")),
        "even a real code, for 24 h"
    );
    let validate = answer(
        client
            .get(format!("{base}/api/coupons/validate/REAL-CODE"))
            .header("X-User-Id", "21")
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!((validate.0, validate.1["code"].as_str()), (403, Some("ACCESS_BLOCKED")));

    // Another user from the same address is blocked too; downloads by policy id are not affected.
    let (status, _) = download(&client, &base, 22, json!({"couponCode": "REAL-CODE", "userId": 22})).await;
    assert_eq!(status, 403);
    let by_id = create_policy(&client, &base, policy_body("DOWNLOAD", None, 1)).await;
    assert_eq!(download(&client, &base, 21, json!({"couponPolicyId": by_id, "userId": 21})).await.0, 201);
}
