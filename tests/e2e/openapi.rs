//! The OpenAPI document against the running api-server: every documented operation is served, the
//! document lists exactly the operations that exist, and Swagger UI loads.

use coupon_e2e::*;
use coupon_testkit::{ADMIN_TOKEN, TestEnv};
use serde_json::Value;

/// Every operation of the HTTP API so far, as `METHOD path`.
const OPERATIONS: &[&str] = &[
    "DELETE /api/coupon-policies/{id}",
    "DELETE /api/coupons/apply/{reservationId}",
    "DELETE /api/coupons/reserve/{reservationId}",
    "GET /api/admin/dlq",
    "GET /api/admin/jobs",
    "GET /api/admin/users/{userId}/coupons",
    "GET /api/coupon-policies",
    "GET /api/coupon-policies/{id}",
    "GET /api/coupon-policies/{id}/codes",
    "GET /api/coupon-policies/{id}/codes/jobs",
    "GET /api/coupon-policies/{id}/codes/jobs/{jobId}",
    "GET /api/coupon-policies/{id}/statistics",
    "GET /api/coupons/catalogue",
    "GET /api/coupons/users/{userId}",
    "GET /api/coupons/users/{userId}/expiring",
    "GET /api/coupons/users/{userId}/statistics",
    "GET /api/coupons/validate/{couponCode}",
    "GET /api/coupons/{couponId}",
    "GET /api/statistics/daily",
    "GET /health/live",
    "GET /health/ready",
    "GET /metrics",
    "PATCH /api/coupon-policies/{id}",
    "PATCH /api/coupon-policies/{id}/remaining-quantity",
    "POST /api/admin/coupons/{couponId}/revoke",
    "POST /api/admin/coupons/{couponId}/use",
    "POST /api/admin/dlq/replay",
    "POST /api/admin/jobs/{name}/run",
    "POST /api/coupon-policies",
    "POST /api/coupon-policies/{id}/codes",
    "POST /api/coupons/apply",
    "POST /api/coupons/direct-issue",
    "POST /api/coupons/download",
    "POST /api/coupons/quote",
    "POST /api/coupons/reserve",
    "POST /api/coupons/use",
];

#[tokio::test]
async fn the_document_lists_exactly_the_served_operations() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let (status, doc) =
        answer(client.get(format!("{base}/api-docs/openapi.json")).send().await.expect("request")).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')), "{doc}");

    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("operations").keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.sort();
    assert_eq!(documented, OPERATIONS);

    for operation in OPERATIONS {
        let (method, path) = operation.split_once(' ').expect("METHOD path");
        let url = format!(
            "{base}{}",
            path.replace("{id}", "1")
                .replace("{couponCode}", "CODE")
                .replace("{reservationId}", "R1")
                .replace("{userId}", "1")
                .replace("{name}", "statistics")
                .replace("{couponId}", "1")
        );
        let request = client
            .request(method.parse().expect("method"), &url)
            .bearer_auth(ADMIN_TOKEN)
            .header("X-User-Id", "1")
            .header("Content-Type", "application/json")
            .body("{}");
        let (status, body) = answer(request.send().await.expect("request")).await;
        let unknown = status == 405 || (status == 404 && body["code"] == "NOT_FOUND");
        assert!(!unknown, "{operation} is documented but not served: {status} {body}");
    }
}

/// SPEC §10: operationIds are unique, and a method a path does not serve answers 405 with an
/// `Allow` header naming exactly the documented methods.
#[tokio::test]
async fn operation_ids_are_unique_and_a_405_names_the_allowed_methods() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let (_, doc) =
        answer(client.get(format!("{base}/api-docs/openapi.json")).send().await.expect("request")).await;
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let methods: Vec<String> =
            item.as_object().expect("operations").keys().map(|m| m.to_uppercase()).collect();
        for operation in item.as_object().expect("operations").values() {
            let id = operation["operationId"].as_str().expect("operationId").to_owned();
            assert!(ids.insert(id.clone()), "operationId {id} appears twice");
        }
        let unserved =
            ["PUT", "PATCH", "DELETE", "POST", "GET"].into_iter().find(|m| !methods.iter().any(|d| d == m));
        let Some(unserved) = unserved else { continue };
        let url = format!("{base}{}", path.replace(['{', '}'], ""));
        let response = client.request(unserved.parse().expect("method"), &url).send().await.expect("request");
        assert_eq!(response.status().as_u16(), 405, "{unserved} {path}");
        let allow =
            response.headers().get("Allow").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let mut allowed: Vec<String> = allow.split(", ").map(str::to_owned).collect();
        let mut documented = methods.clone();
        allowed.sort();
        documented.sort();
        assert_eq!(allowed, documented, "Allow of {path}");
    }
}

#[tokio::test]
async fn errors_and_auth_are_described() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let (_, doc) =
        answer(client().get(format!("{base}/api-docs/openapi.json")).send().await.expect("request")).await;
    let schemas = &doc["components"]["schemas"];
    for field in ["code", "message", "status", "path", "timestamp", "fieldErrors"] {
        assert!(schemas["ErrorBody"]["properties"][field].is_object(), "ErrorBody.{field}");
    }
    let codes: Vec<&str> =
        schemas["ErrorCode"]["enum"].as_array().expect("codes").iter().filter_map(Value::as_str).collect();
    assert!(codes.contains(&"COUPON_SOLD_OUT") && codes.contains(&"RATE_LIMITED"), "{codes:?}");
    assert!(doc["components"]["securitySchemes"]["admin"].is_object());
    assert!(doc["components"]["securitySchemes"]["user"].is_object());
    let download = &doc["paths"]["/api/coupons/download"]["post"];
    for status in ["201", "400", "401", "403", "404", "409", "410", "429"] {
        assert!(download["responses"][status].is_object(), "download documents {status}");
    }
    let list = &doc["paths"]["/api/coupon-policies"]["get"]["parameters"];
    let names: Vec<&str> =
        list.as_array().map(|p| p.iter().filter_map(|p| p["name"].as_str()).collect()).unwrap_or_default();
    assert_eq!(names, ["cursor", "limit"]);
}

#[tokio::test]
async fn swagger_ui_is_served() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let response = client().get(format!("{base}/swagger-ui/")).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 200);
    let html = response.text().await.expect("html");
    assert!(html.contains("swagger"), "{html}");
}

/// SPEC §11: the events' AsyncAPI document is served beside the OpenAPI document.
#[tokio::test]
async fn the_asyncapi_document_is_served_beside_the_openapi_document() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let (status, doc) =
        answer(client().get(format!("{base}/api-docs/asyncapi.json")).send().await.expect("request")).await;
    assert_eq!((status, doc["asyncapi"].as_str()), (200, Some("3.0.0")));
    let mut addresses: Vec<&str> = doc["channels"]
        .as_object()
        .expect("channels")
        .values()
        .filter_map(|c| c["address"].as_str())
        .collect();
    addresses.sort_unstable();
    assert_eq!(
        addresses,
        [
            "coupon.budget",
            "coupon.cancelled",
            "coupon.expired",
            "coupon.issue-requested",
            "coupon.issue-requested.DLQ",
            "coupon.issued",
            "coupon.reserved",
            "coupon.used",
            "order.cancelled",
            "order.cancelled.DLQ",
            "payment.completed.v1",
            "payment.completed.v1.DLQ",
            "payment.failed.v1",
            "payment.failed.v1.DLQ",
        ]
    );
}
