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

/// `GET /api/coupons/validate/{code}` as `user`, with extra headers.
async fn validate_as(
    client: &reqwest::Client,
    base: &str,
    user: i64,
    code: &str,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let mut request =
        client.get(format!("{base}/api/coupons/validate/{code}")).header("X-User-Id", user.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    answer(request.send().await.expect("request")).await
}

/// SPEC §10: X-Forwarded-For names the client only when the request comes from a trusted proxy.
/// From anyone else the header is ignored, so guessers cannot rotate it to slip past a block, nor
/// name a victim's address to get it blocked.
#[tokio::test]
async fn only_a_trusted_proxy_names_the_client_address() {
    // The tests' requests come from 127.0.0.1: trusted here, as a gateway would be.
    let env = rate_limited_env(1000, 1000).await.set("HTTP_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8");
    let base = start_api(&env);
    let client = client();
    let mut code_policy = policy_body("CODE", None, 1);
    code_policy["couponCode"] = json!("REAL-CODE");
    create_policy(&client, &base, code_policy).await;

    // Ten users guess from one address behind two proxies; the address is blocked for everyone.
    for user in 1..=10 {
        let via = [("X-Forwarded-For", "garbage, 203.0.113.77, 10.1.2.3")];
        let (status, body) = validate_as(&client, &base, user, &format!("GUESS-{user}"), &via).await;
        assert_eq!((status, body["valid"].as_bool()), (200, Some(false)), "{body}");
    }
    let (status, body) =
        validate_as(&client, &base, 11, "REAL-CODE", &[("X-Forwarded-For", "203.0.113.77")]).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("ACCESS_BLOCKED")));
    // Another address, and a request whose every hop is a trusted proxy (no address to block).
    for via in ["198.51.100.9", "10.9.9.9"] {
        let (status, body) = validate_as(&client, &base, 12, "REAL-CODE", &[("X-Forwarded-For", via)]).await;
        assert_eq!((status, body["valid"].as_bool()), (200, Some(true)), "{via}: {body}");
    }

    // Without trusted proxies the header is ignored: the guesser's own address (the TCP peer) is
    // blocked however the header rotates, and the address it names is not.
    let untrusted = start_api(&rate_limited_env(1000, 1000).await);
    for user in 1..=10 {
        let forged = format!("192.0.2.{user}");
        let (status, _) =
            validate_as(&client, &untrusted, user, &format!("GUESS-{user}"), &[("X-Forwarded-For", &forged)])
                .await;
        assert_eq!(status, 200);
    }
    let (status, body) =
        validate_as(&client, &untrusted, 20, "ANY-CODE", &[("X-Forwarded-For", "192.0.2.200")]).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("ACCESS_BLOCKED")), "the peer was blocked");
}

/// Checking a block and counting an attempt are one step: fifty guesses at once from one user
/// get exactly the limit's worth of lookups, and the rest are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_cannot_outrun_the_limit() {
    let env = rate_limited_env(1000, 1000).await;
    let base = start_api(&env);
    let client = client();
    let guesses: Vec<_> = (0..50)
        .map(|n| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                download(&client, &base, 31, json!({"couponCode": format!("GUESS-{n}"), "userId": 31}))
                    .await
                    .0
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for guess in guesses {
        statuses.push(guess.await.expect("task"));
    }
    let looked_up = statuses.iter().filter(|s| **s == 404).count();
    let refused = statuses.iter().filter(|s| **s == 403).count();
    assert_eq!((looked_up, refused), (10, 40), "{statuses:?}");
}

/// Code checks have their own per-user limit (COUPON_VALIDATE_PER_MINUTE).
#[tokio::test]
async fn code_checks_have_their_own_per_user_limit() {
    let env = rate_limited_env(1000, 1000).await.set("COUPON_VALIDATE_PER_MINUTE", "3");
    let base = start_api(&env);
    let client = client();
    let mut code_policy = policy_body("CODE", None, 1);
    code_policy["couponCode"] = json!("REAL-CODE");
    create_policy(&client, &base, code_policy).await;
    clear_of_minute_boundary().await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(validate_as(&client, &base, 41, "REAL-CODE", &[]).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    assert_eq!(validate_as(&client, &base, 42, "REAL-CODE", &[]).await.0, 200, "another user's own budget");
}
