//! Hostile input over HTTP (SPEC §10): no value of any request field, query parameter or path
//! segment yields a 5xx, and every refusal has the SPEC §5 error shape.

use coupon_e2e::*;
use coupon_testkit::{ADMIN_TOKEN, TestEnv};
use reqwest::Method;
use serde_json::{Value, json};

/// The values a hostile or broken client sends in place of any JSON field.
fn hostile_values() -> Vec<Value> {
    let mut values: Vec<Value> = [
        "1e16",
        "1e20",
        "1e300",
        "-1",
        "0",
        "0.001",
        "1.5",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775809",
        "true",
        "null",
        "[]",
        "[1, -1, 1e30]",
        "{}",
        r#""""#,
        r#"" ""#,
        r#""nul \u0000 inside""#,
        r#""bell \u0007 and escape \u001b""#,
        r#""-5000-01-01T00:00:00Z""#,
        r#""+99999-01-01T00:00:00Z""#,
        r#""0001-01-01T00:00:00Z""#,
        r#""1999-12-31T23:59:59Z""#,
        r#""2024-02-30T00:00:00Z""#,
        r#""\u202e\ud83d\ude00 é""#,
    ]
    .iter()
    .map(|raw| serde_json::from_str(raw).expect("hostile value"))
    .collect();
    values.push(Value::from("x".repeat(10_000)));
    values
}

/// Hostile path segments and query values (percent-encoded where needed).
const HOSTILE_TEXT: [&str; 12] = [
    "0",
    "-1",
    "9223372036854775808",
    "1e3",
    "%00",
    "%E2%80%AE",
    "%FF%FE",
    "-9999-01-01",
    "99999-01-01",
    "2024-02-30",
    "x%20y",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];

struct Call {
    method: Method,
    path: String,
    admin: bool,
    body: Option<Value>,
}

impl Call {
    fn new(method: Method, path: impl Into<String>, admin: bool, body: Option<Value>) -> Self {
        Self { method, path: path.into(), admin, body }
    }
}

/// Sends `call` and insists on an answer below 500 with the error shape when it is a refusal.
async fn assert_no_5xx(client: &reqwest::Client, base: &str, call: &Call, what: &str) {
    let mut request =
        client.request(call.method.clone(), format!("{base}{}", call.path)).header("X-User-Id", "1");
    if call.admin {
        request = request.bearer_auth(ADMIN_TOKEN);
    }
    if let Some(body) = &call.body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status < 500, "{what}: {} {} answered {status}: {body}", call.method, call.path);
    if status >= 400 {
        assert!(
            body["code"].is_string() && body["status"] == status && body["fieldErrors"].is_array(),
            "{what}: {} {} answered {status} without the error shape: {body}",
            call.method,
            call.path
        );
    }
}

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

    let bodies: Vec<(Method, String, bool, Value)> = vec![
        (Method::POST, "/api/coupon-policies".into(), true, {
            let mut body = policy_body("CODE", Some(10), 1);
            body["couponCode"] = json!("HOSTILE");
            body["description"] = json!("d");
            body["minimumOrderAmount"] = json!(1000);
            body["isActive"] = json!(true);
            body
        }),
        (
            Method::PATCH,
            format!("/api/coupon-policies/{policy}"),
            true,
            json!({"couponName": "n", "description": "d", "maxIssueCount": 2000,
                   "validUntil": (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339(), "isActive": true}),
        ),
        (
            Method::PATCH,
            format!("/api/coupon-policies/{policy}/remaining-quantity"),
            true,
            json!({"newMaxIssueCount": 3000, "modifiedBy": "ops", "reason": "more"}),
        ),
        (Method::POST, "/api/coupons/download".into(), false, json!({"couponPolicyId": policy, "userId": 1})),
        (Method::POST, "/api/coupons/download".into(), false, json!({"couponCode": "HOSTILE", "userId": 1})),
        (
            Method::POST,
            "/api/coupons/direct-issue".into(),
            true,
            json!({"couponPolicyId": policy, "userIds": [2, 3], "issuedBy": "ops"}),
        ),
        (
            Method::POST,
            "/api/coupons/reserve".into(),
            false,
            json!({"reservationId": "H1", "userId": 1, "couponId": coupon, "orderAmount": 50000, "orderId": "O-H1"}),
        ),
        (
            Method::POST,
            "/api/coupons/apply".into(),
            false,
            json!({"reservationId": "H2", "userId": 1, "couponId": coupon, "orderAmount": 50000, "orderId": "O-H2"}),
        ),
        (
            Method::POST,
            "/api/coupons/use".into(),
            false,
            json!({"reservationId": "H1", "orderId": "O-H1", "paymentId": "P-H1"}),
        ),
    ];
    let values = hostile_values();
    for (method, path, admin, body) in &bodies {
        let fields: Vec<String> = body.as_object().expect("object").keys().cloned().collect();
        for field in &fields {
            for value in &values {
                let mut hostile = body.clone();
                hostile[field.as_str()] = value.clone();
                let call = Call::new(method.clone(), path.clone(), *admin, Some(hostile));
                assert_no_5xx(&client, &base, &call, &format!("{field} = {value}")).await;
            }
        }
        for whole in [json!([]), json!("text"), json!(null), json!({"unknown": 1})] {
            let call = Call::new(method.clone(), path.clone(), *admin, Some(whole.clone()));
            assert_no_5xx(&client, &base, &call, &format!("body {whole}")).await;
        }
    }

    for text in HOSTILE_TEXT {
        let calls = [
            Call::new(Method::GET, format!("/api/coupon-policies/{text}"), true, None),
            Call::new(Method::DELETE, format!("/api/coupon-policies/{text}"), true, None),
            Call::new(Method::GET, format!("/api/coupon-policies/{text}/statistics"), true, None),
            Call::new(Method::GET, format!("/api/coupon-policies?cursor={text}&limit={text}"), true, None),
            Call::new(Method::GET, format!("/api/coupons/validate/{text}"), false, None),
            Call::new(Method::GET, format!("/api/coupons/users/{text}"), false, None),
            Call::new(Method::GET, format!("/api/coupons/users/1?status={text}"), false, None),
            Call::new(Method::GET, format!("/api/coupons/users/1?cursor={text}&limit={text}"), false, None),
            Call::new(
                Method::GET,
                format!("/api/coupons/users/1/expiring?days={text}&limit={text}"),
                false,
                None,
            ),
            Call::new(Method::GET, format!("/api/coupons/users/{text}/statistics"), false, None),
            Call::new(Method::GET, format!("/api/statistics/daily?from={text}"), true, None),
            Call::new(Method::GET, format!("/api/statistics/daily?to={text}"), true, None),
            Call::new(Method::GET, format!("/api/statistics/daily?from={text}&to={text}"), true, None),
            Call::new(Method::DELETE, format!("/api/coupons/apply/{text}"), false, None),
            Call::new(Method::DELETE, format!("/api/coupons/reserve/{text}"), false, None),
            Call::new(Method::POST, format!("/api/admin/jobs/{text}/run"), true, None),
        ];
        for call in &calls {
            assert_no_5xx(&client, &base, call, text).await;
        }
    }
    assert_eq!(
        count(&env, "SELECT count(*) AS n FROM coupon_policies WHERE max_issue_count > 100000").await,
        0,
        "no hostile cap was stored"
    );
}
