//! The hostile-input table (SPEC §10): every field of every JSON body with each hostile value,
//! and every path segment and query parameter with each hostile text. `tests/e2e/hostile.rs` and
//! the fault suite's `hostile-http` scenario send it; no answer may be a 5xx, and every refusal
//! must have the SPEC §5 error shape.

use coupon_domain::clock::{Clock, SystemClock};
use reqwest::Method;
use serde_json::{Value, json};

use crate::policy_body;

/// The values a hostile or broken client sends in place of any JSON field.
pub fn hostile_values() -> Vec<Value> {
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
pub const HOSTILE_TEXT: [&str; 12] = [
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

/// One request of the table.
#[derive(Debug)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub admin: bool,
    pub body: Option<Value>,
    /// What is hostile in it, for messages.
    pub what: String,
}

impl Call {
    fn new(method: Method, path: impl Into<String>, admin: bool, body: Option<Value>, what: String) -> Self {
        Self { method, path: path.into(), admin, body, what }
    }

    /// Sends the call as user 1 (and as admin when it is an admin call): its status and body.
    pub async fn send(&self, client: &reqwest::Client, base: &str) -> (u16, Value) {
        let mut request =
            client.request(self.method.clone(), format!("{base}{}", self.path)).header("X-User-Id", "1");
        if self.admin {
            request = request.bearer_auth(coupon_testkit::ADMIN_TOKEN);
        }
        if let Some(body) = &self.body {
            request = request.json(body);
        }
        crate::answer(request.send().await.expect("request")).await
    }
}

/// Whether an answer is acceptable for hostile input: below 500, and a refusal in the SPEC §5
/// shape.
pub fn well_formed(status: u16, body: &Value) -> bool {
    status < 500
        && (status < 400
            || (body["code"].is_string() && body["status"] == status && body["fieldErrors"].is_array()))
}

/// The whole table, around an existing DOWNLOAD `policy` and a `coupon` of user 1.
pub fn hostile_calls(policy: i64, coupon: i64) -> Vec<Call> {
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
                   "validUntil": (SystemClock.now() + chrono::Duration::days(2)).to_rfc3339(), "isActive": true}),
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
        (
            Method::POST,
            format!("/api/admin/coupons/{coupon}/use"),
            true,
            json!({"orderId": "O-H3", "orderAmount": 50000, "usedBy": "ops", "reason": "phone order"}),
        ),
        (
            Method::POST,
            format!("/api/admin/coupons/{coupon}/revoke"),
            true,
            json!({"reason": "wrong account", "revokedBy": "ops"}),
        ),
    ];
    let values = hostile_values();
    let mut calls = Vec::new();
    for (method, path, admin, body) in &bodies {
        let fields: Vec<String> = body.as_object().expect("object").keys().cloned().collect();
        for field in &fields {
            for value in &values {
                let mut hostile = body.clone();
                hostile[field.as_str()] = value.clone();
                calls.push(Call::new(
                    method.clone(),
                    path.clone(),
                    *admin,
                    Some(hostile),
                    format!("{field} = {value}"),
                ));
            }
        }
        for whole in [json!([]), json!("text"), json!(null), json!({"unknown": 1})] {
            calls.push(Call::new(
                method.clone(),
                path.clone(),
                *admin,
                Some(whole.clone()),
                format!("body {whole}"),
            ));
        }
    }

    for text in HOSTILE_TEXT {
        let paths = [
            (Method::GET, format!("/api/coupon-policies/{text}"), true),
            (Method::DELETE, format!("/api/coupon-policies/{text}"), true),
            (Method::GET, format!("/api/coupon-policies/{text}/statistics"), true),
            (Method::GET, format!("/api/coupon-policies?cursor={text}&limit={text}"), true),
            (Method::GET, format!("/api/coupons/validate/{text}"), false),
            (Method::GET, format!("/api/coupons/users/{text}"), false),
            (Method::GET, format!("/api/coupons/users/1?status={text}"), false),
            (Method::GET, format!("/api/coupons/users/1?cursor={text}&limit={text}"), false),
            (Method::GET, format!("/api/coupons/users/1/expiring?days={text}&limit={text}"), false),
            (Method::GET, format!("/api/coupons/users/{text}/statistics"), false),
            (Method::GET, format!("/api/statistics/daily?from={text}"), true),
            (Method::GET, format!("/api/statistics/daily?to={text}"), true),
            (Method::GET, format!("/api/statistics/daily?from={text}&to={text}"), true),
            (Method::DELETE, format!("/api/coupons/apply/{text}"), false),
            (Method::DELETE, format!("/api/coupons/reserve/{text}"), false),
            (Method::POST, format!("/api/admin/jobs/{text}/run"), true),
            (Method::GET, format!("/api/coupons/{text}"), false),
            (Method::GET, format!("/api/coupons/catalogue?cursor={text}&limit={text}"), false),
            (Method::GET, format!("/api/admin/users/{text}/coupons"), true),
            (
                Method::GET,
                format!("/api/admin/users/1/coupons?status={text}&cursor={text}&limit={text}"),
                true,
            ),
            (Method::DELETE, format!("/api/coupon-policies/{policy}?expireIssued={text}"), true),
        ];
        for (method, path, admin) in paths {
            calls.push(Call::new(method, path, admin, None, text.to_owned()));
        }
    }
    calls
}
