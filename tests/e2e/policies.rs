//! Policy administration over HTTP: create with its validation codes, read, page, change within
//! the allowed directions, set the cap, deactivate, statistics, and the public code check.

use coupon_domain::clock::{Clock, SystemClock};
use coupon_e2e::*;
use coupon_testkit::TestEnv;
use serde_json::{Value, json};

#[tokio::test]
async fn create_answers_the_policy_and_get_reads_it_back() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let mut body = policy_body("CODE", Some(1000), 1);
    body["couponCode"] = json!(" summer-25 ");
    body["description"] = json!("25% off, up to 5,000");
    body["discountValue"] = json!(12.5);
    body["minimumOrderAmount"] = json!(10000);

    let (status, created) = admin_post(&client, &format!("{base}/api/coupon-policies"), body).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().expect("id");
    assert_eq!(created["couponCode"], "SUMMER-25");
    assert_eq!(created["discountValue"], json!(12.5));
    assert_eq!(created["minimumOrderAmount"], 10000);
    assert_eq!(created["maxDiscountAmount"], 5000);
    assert_eq!(created["currentIssueCount"], 0);
    assert_eq!(created["maxIssuePerUser"], 1);
    assert_eq!(created["isActive"], true);
    assert!(created["createdAt"].as_str().is_some_and(|t| t.ends_with('Z')));

    let (status, read) = admin_get(&client, &format!("{base}/api/coupon-policies/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(read, created);
    let (status, missing) = admin_get(&client, &format!("{base}/api/coupon-policies/987654")).await;
    assert_eq!((status, missing["code"].as_str()), (404, Some("POLICY_NOT_FOUND")));
}

#[tokio::test]
async fn invalid_policies_are_refused_with_the_spec_codes() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let url = format!("{base}/api/coupon-policies");
    let now = SystemClock.now();
    let with = |field: &str, value: Value| {
        let mut body = policy_body("DOWNLOAD", Some(10), 1);
        body[field] = value;
        body
    };
    let cases = [
        (with("discountValue", json!(150)), "INVALID_DISCOUNT_VALUE"),
        (with("discountValue", json!(0)), "INVALID_DISCOUNT_VALUE"),
        (with("validFrom", json!((now + chrono::Duration::days(3)).to_rfc3339())), "INVALID_DATE_RANGE"),
        (with("couponName", json!("")), "VALIDATION_ERROR"),
        (with("couponName", json!("x".repeat(101))), "VALIDATION_ERROR"),
        (with("discountType", json!("BOGO")), "VALIDATION_ERROR"),
        (with("distributionType", json!("LOTTERY")), "VALIDATION_ERROR"),
        (with("distributionType", json!("CODE")), "VALIDATION_ERROR"),
        (with("maxIssuePerUser", json!(0)), "VALIDATION_ERROR"),
        (with("validDays", json!(0)), "VALIDATION_ERROR"),
        (with("maxIssueCount", json!(-1)), "VALIDATION_ERROR"),
        (with("couponCode", json!("no spaces allowed")), "VALIDATION_ERROR"),
        (with("validDays", json!("thirty")), "INVALID_REQUEST"),
    ];
    for (body, code) in cases {
        let (status, answer) = admin_post(&client, &url, body.clone()).await;
        assert_eq!((status, answer["code"].as_str()), (400, Some(code)), "{body} → {answer}");
    }

    let (status, answer) = admin_post(&client, &url, json!({})).await;
    assert_eq!(status, 400);
    let fields: Vec<&str> = answer["fieldErrors"]
        .as_array()
        .expect("fieldErrors")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    for field in [
        "couponName",
        "discountType",
        "discountValue",
        "distributionType",
        "validDays",
        "validFrom",
        "validUntil",
    ] {
        assert!(fields.contains(&field), "{field} missing from {fields:?}");
    }
    assert_eq!(count(&env, "SELECT count(*) AS n FROM coupon_policies").await, 0);
}

#[tokio::test]
async fn coupon_codes_are_unique_whatever_their_case() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let url = format!("{base}/api/coupon-policies");
    let mut body = policy_body("CODE", None, 1);
    body["couponCode"] = json!("WELCOME");
    assert_eq!(admin_post(&client, &url, body.clone()).await.0, 201);
    body["couponCode"] = json!("welcome");
    let (status, answer) = admin_post(&client, &url, body).await;
    assert_eq!((status, answer["code"].as_str()), (409, Some("DUPLICATE_COUPON_CODE")));
}

#[tokio::test]
async fn listing_pages_through_every_policy_once() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let mut created = Vec::new();
    for _ in 0..7 {
        created.push(create_policy(&client, &base, policy_body("DOWNLOAD", None, 1)).await);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<i64> = None;
    loop {
        let url = match cursor {
            Some(c) => format!("{base}/api/coupon-policies?limit=3&cursor={c}"),
            None => format!("{base}/api/coupon-policies?limit=3"),
        };
        let (status, page) = admin_get(&client, &url).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(page["policies"].as_array().expect("policies").iter().filter_map(|p| p["id"].as_i64()));
        if page["hasMore"] != true {
            assert_eq!(page["nextCursor"], Value::Null);
            break;
        }
        cursor = page["nextCursor"].as_i64();
    }
    assert_eq!(seen, created);
    let (status, answer) = admin_get(&client, &format!("{base}/api/coupon-policies?limit=101")).await;
    assert_eq!((status, answer["code"].as_str()), (400, Some("VALIDATION_ERROR")));
}

#[tokio::test]
async fn changes_only_raise_the_cap_and_extend_the_window() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let id = create_policy(&client, &base, policy_body("DOWNLOAD", Some(100), 1)).await;
    let url = format!("{base}/api/coupon-policies/{id}");
    let (_, before) = admin_get(&client, &url).await;

    let (status, raised) =
        admin_patch(&client, &url, json!({"maxIssueCount": 200, "couponName": "Renamed"})).await;
    assert_eq!(status, 200, "{raised}");
    assert_eq!(raised["maxIssueCount"], 200);
    assert_eq!(raised["couponName"], "Renamed");

    let (status, lowered) = admin_patch(&client, &url, json!({"maxIssueCount": 150})).await;
    assert_eq!((status, lowered["code"].as_str()), (400, Some("VALIDATION_ERROR")));
    assert_eq!(lowered["fieldErrors"][0]["field"], "maxIssueCount");

    let earlier = SystemClock.now().to_rfc3339();
    let (status, shortened) = admin_patch(&client, &url, json!({"validUntil": earlier})).await;
    assert_eq!((status, shortened["fieldErrors"][0]["field"].as_str()), (400, Some("validUntil")));

    let later = (SystemClock.now() + chrono::Duration::days(30)).to_rfc3339();
    let (status, extended) = admin_patch(&client, &url, json!({"validUntil": later})).await;
    assert_eq!(status, 200);
    assert_ne!(extended["validUntil"], before["validUntil"]);

    let (status, unknown) = admin_patch(&client, &url, json!({"discountValue": 50})).await;
    assert_eq!(
        (status, unknown["code"].as_str()),
        (400, Some("INVALID_REQUEST")),
        "discount terms are not editable"
    );
}

#[tokio::test]
async fn the_cap_can_be_set_down_to_the_issued_count_but_not_below() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let id = create_policy(&client, &base, policy_body("FIRST_COME", Some(10), 1)).await;
    for user in 1..=3 {
        assert_eq!(
            download(&client, &base, user, json!({"couponPolicyId": id, "userId": user})).await.0,
            201
        );
    }
    let url = format!("{base}/api/coupon-policies/{id}/remaining-quantity");

    let (status, below) =
        admin_patch(&client, &url, json!({"newMaxIssueCount": 2, "modifiedBy": "ops", "reason": "oops"}))
            .await;
    assert_eq!((status, below["code"].as_str()), (400, Some("VALIDATION_ERROR")));
    let message = below["fieldErrors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains('3'), "the message names the issued count: {message}");

    let (status, changed) =
        admin_patch(&client, &url, json!({"newMaxIssueCount": 3, "modifiedBy": "ops", "reason": "close"}))
            .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["couponPolicyId"], id);
    assert_eq!(changed["previousMaxIssueCount"], 10);
    assert_eq!(changed["newMaxIssueCount"], 3);
    assert_eq!(changed["currentIssuedCount"], 3);
    assert_eq!(changed["remainingCount"], 0);
    assert_eq!(changed["success"], true);
    let (status, sold_out) = download(&client, &base, 4, json!({"couponPolicyId": id, "userId": 4})).await;
    assert_eq!(
        (status, sold_out["code"].as_str()),
        (410, Some("COUPON_SOLD_OUT")),
        "the gate follows the new cap"
    );

    let (status, raised) = admin_patch(&client, &url, json!({"newMaxIssueCount": 5})).await;
    assert_eq!((status, raised["remainingCount"].as_i64()), (200, Some(2)));
    assert_eq!(download(&client, &base, 4, json!({"couponPolicyId": id, "userId": 4})).await.0, 201);
}

#[tokio::test]
async fn a_deactivated_policy_stops_issuing() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let id = create_policy(&client, &base, policy_body("DOWNLOAD", None, 1)).await;
    let response = client
        .delete(format!("{base}/api/coupon-policies/{id}"))
        .bearer_auth(coupon_testkit::ADMIN_TOKEN)
        .send()
        .await
        .expect("request");
    let (status, body) = answer(response).await;
    assert_eq!((status, body["isActive"].as_bool()), (200, Some(false)));
    let (status, refused) = download(&client, &base, 1, json!({"couponPolicyId": id, "userId": 1})).await;
    assert_eq!((status, refused["code"].as_str()), (400, Some("POLICY_INACTIVE")));
}

#[tokio::test]
async fn statistics_count_what_was_issued() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let id = create_policy(&client, &base, policy_body("DOWNLOAD", Some(10), 1)).await;
    let url = format!("{base}/api/coupon-policies/{id}/statistics");
    let (status, empty) = admin_get(&client, &url).await;
    assert_eq!(status, 200);
    assert_eq!(empty["issuedCount"], 0);
    assert_eq!(empty["usageRate"], 0);
    assert_eq!(empty["lastIssuedAt"], Value::Null);

    for user in 1..=4 {
        download(&client, &base, user, json!({"couponPolicyId": id, "userId": user})).await;
    }
    let (_, stats) = admin_get(&client, &url).await;
    assert_eq!(stats["policyId"], id);
    assert_eq!(stats["maxIssueCount"], 10);
    assert_eq!(stats["issuedCount"], 4);
    assert_eq!(stats["remainingCount"], 6);
    assert_eq!(stats["usedCount"], 0);
    assert_eq!(stats["totalDiscountAmount"], 0);
    assert!(stats["lastIssuedAt"].as_str().is_some());
}

#[tokio::test]
async fn validate_tells_whether_a_code_can_be_redeemed() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let mut body = policy_body("CODE", Some(1), 1);
    body["couponCode"] = json!("ONCE");
    create_policy(&client, &base, body).await;
    let check = |code: &str| {
        let client = client.clone();
        let url = format!("{base}/api/coupons/validate/{code}");
        async move { answer(client.get(url).header("X-User-Id", "1").send().await.expect("request")).await }
    };

    let (status, ok) = check("%20once%20").await;
    assert_eq!(status, 200);
    assert_eq!((ok["couponCode"].as_str(), ok["valid"].as_bool()), (Some("ONCE"), Some(true)));
    assert!(ok["message"].is_string());

    let (status, unknown) = check("NOPE").await;
    assert_eq!((status, unknown["valid"].as_bool()), (200, Some(false)), "unknown codes are 200, not 404");

    assert_eq!(download(&client, &base, 1, json!({"couponCode": "ONCE", "userId": 1})).await.0, 201);
    let (_, sold_out) = check("ONCE").await;
    assert_eq!(sold_out["valid"], false);
}

#[tokio::test]
async fn admin_endpoints_need_a_valid_token() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let url = format!("{base}/api/coupon-policies");
    let none = answer(client.get(&url).send().await.expect("request")).await;
    assert_eq!((none.0, none.1["code"].as_str()), (401, Some("UNAUTHENTICATED")));
    let wrong =
        answer(client.get(&url).bearer_auth("definitely-not-the-token").send().await.expect("request")).await;
    assert_eq!((wrong.0, wrong.1["code"].as_str()), (403, Some("UNAUTHORIZED_COUPON_ACCESS")));
    let user = answer(
        client
            .post(&url)
            .header("X-User-Id", "1")
            .json(&policy_body("DOWNLOAD", None, 1))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(user.0, 401, "a user header is no admin token");
}
