//! Hostile input over HTTP (SPEC §10): no value of any request field, query parameter or path
//! segment yields a 5xx, and every refusal has the SPEC §5 error shape.

use coupon_e2e::hostile_input::{hostile_calls, well_formed};
use coupon_e2e::*;
use coupon_testkit::TestEnv;
use serde_json::{Value, json};

/// The failures of the hardening issue, each a 500 before: now 400 `VALIDATION_ERROR` naming the
/// field.
#[tokio::test]
async fn values_the_database_cannot_hold_are_refused_naming_their_field() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let url = format!("{base}/api/coupon-policies");
    let with = |field: &str, value: Value| {
        let mut body = policy_body("DOWNLOAD", Some(10), 1);
        body[field] = value;
        body
    };
    for (field, value) in [
        ("discountValue", json!(1e16)),
        ("discountValue", json!(0.001)),
        ("couponName", json!("Black\u{0}Friday")),
        ("validFrom", json!("-5000-01-01T00:00:00Z")),
        ("minimumOrderAmount", json!(1e20)),
        ("maxDiscountAmount", json!(12.345)),
        ("description", json!("tab\tand\u{1b}escape")),
    ] {
        let (status, body) = admin_post(&client, &url, with(field, value.clone())).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("VALIDATION_ERROR")),
            "{field} = {value}: {body}"
        );
        assert_eq!(body["fieldErrors"][0]["field"], field, "{body}");
    }
    let (status, body) =
        admin_get(&client, &format!("{base}/api/statistics/daily?from=-9999-01-01&to=-9999-01-02")).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("VALIDATION_ERROR")), "{body}");
    assert_eq!(body["fieldErrors"][0]["field"], "to", "{body}");
    let (status, body) =
        admin_get(&client, &format!("{base}/api/statistics/daily?from=2024-01-01&to=2025-01-02")).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("VALIDATION_ERROR")), "367 days: {body}");
}

/// Every field of every JSON body, every query parameter and path segment, with each hostile
/// value: no 5xx, and every refusal in the SPEC §5 shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_hostile_value_of_any_field_yields_a_5xx() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let policy = create_policy(&client, &base, policy_body("DOWNLOAD", Some(1000), 5)).await;
    let coupon = coupon(&client, &base, policy, 1).await;
    for call in hostile_calls(policy, coupon) {
        let (status, body) = call.send(&client, &base).await;
        assert!(
            well_formed(status, &body),
            "{}: {} {} answered {status}: {body}",
            call.what,
            call.method,
            call.path
        );
    }
    assert_eq!(
        count(&env, "SELECT count(*) AS n FROM coupon_policies WHERE max_issue_count > 100000").await,
        0,
        "no hostile cap was stored"
    );
}
