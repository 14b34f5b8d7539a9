//! Campaign features over HTTP and Kafka (SPEC §11.3–§11.5): stacking on one order, spend
//! budgets with their statistics and threshold events, and quotes that name what a reserve
//! would answer.

use std::time::Duration;

use coupon_e2e::*;
use coupon_testkit::TestEnv;
use serde_json::{Value, json};

/// A DOWNLOAD policy giving `fixed` off, with these extra fields; returns its id.
async fn fixed_policy(client: &reqwest::Client, base: &str, fixed: i64, extra: Value) -> i64 {
    let mut body = policy_body("DOWNLOAD", None, 5);
    body["discountType"] = json!("FIXED_AMOUNT");
    body["discountValue"] = json!(fixed);
    body["maxDiscountAmount"] = Value::Null;
    for (k, v) in extra.as_object().expect("extra") {
        body[k] = v.clone();
    }
    create_policy(client, base, body).await
}

/// A policy giving 4,000 off within a budget of 10,000, and a coupon of it for each of the users
/// `1..=users`, as (user, coupon).
async fn budgeted(client: &reqwest::Client, base: &str, users: i64) -> (i64, Vec<(i64, i64)>) {
    let policy = fixed_policy(client, base, 4_000, json!({"budgetAmount": 10_000})).await;
    let mut coupons = Vec::new();
    for user in 1..=users {
        coupons.push((user, coupon(client, base, policy, user).await));
    }
    (policy, coupons)
}

async fn reserve(
    client: &reqwest::Client,
    base: &str,
    user: i64,
    coupon: i64,
    rid: &str,
    order: Option<&str>,
) -> (u16, Value) {
    let body = json!({"reservationId": rid, "userId": user, "couponId": coupon, "orderAmount": 50_000, "orderId": order});
    post_as(client, &format!("{base}/api/coupons/reserve"), user, body).await
}

async fn quote(client: &reqwest::Client, base: &str, user: i64, order: Option<&str>) -> Value {
    let body = json!({"userId": user, "orderAmount": 50_000, "orderId": order});
    let (status, quoted) = post_as(client, &format!("{base}/api/coupons/quote"), user, body).await;
    assert_eq!(status, 200, "{quoted}");
    quoted
}

/// The quote line of `coupon`.
fn line(quoted: &Value, coupon: i64) -> &Value {
    quoted["coupons"].as_array().expect("coupons").iter().find(|c| c["couponId"] == coupon).expect("line")
}

#[tokio::test]
async fn policies_carry_stacking_and_budgets_and_refuse_bad_ones() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let funded =
        fixed_policy(&client, &base, 1_000, json!({"stackable": true, "budgetAmount": 10_000})).await;
    let (_, got) = admin_get(&client, &format!("{base}/api/coupon-policies/{funded}")).await;
    assert_eq!(
        (got["stackable"].clone(), got["budgetAmount"].clone()),
        (json!(true), json!(10_000)),
        "{got}"
    );
    let url = format!("{base}/api/coupon-policies/{funded}");
    let (status, raised) = admin_patch(&client, &url, json!({"budgetAmount": 12_500.5})).await;
    assert_eq!((status, raised["budgetAmount"].clone()), (200, json!(12_500.5)), "{raised}");
    let (status, lowered) = admin_patch(&client, &url, json!({"budgetAmount": 100})).await;
    assert_eq!(
        (status, lowered["fieldErrors"][0]["field"].as_str()),
        (400, Some("budgetAmount")),
        "{lowered}"
    );
    let plain = fixed_policy(&client, &base, 1_000, json!({})).await;
    let (_, got) = admin_get(&client, &format!("{base}/api/coupon-policies/{plain}")).await;
    assert_eq!((got["stackable"].clone(), got["budgetAmount"].clone()), (json!(false), Value::Null));
    let (status, added) =
        admin_patch(&client, &format!("{base}/api/coupon-policies/{plain}"), json!({"budgetAmount": 100}))
            .await;
    assert_eq!((status, added["code"].as_str()), (400, Some("VALIDATION_ERROR")), "{added}");
    for bad in [json!(0), json!(-5), json!(1.234)] {
        let mut body = policy_body("DOWNLOAD", None, 1);
        body["budgetAmount"] = bad.clone();
        let (status, refused) = admin_post(&client, &format!("{base}/api/coupon-policies"), body).await;
        assert_eq!(status, 400, "{bad}: {refused}");
        assert_eq!(refused["code"], "VALIDATION_ERROR", "{bad}: {refused}");
    }
}

#[tokio::test]
async fn an_order_stacks_what_may_share_it_and_quotes_agree_with_reserves() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let user = 7;
    let exclusive = fixed_policy(&client, &base, 5_000, json!({})).await;
    let small = fixed_policy(&client, &base, 2_000, json!({"stackable": true})).await;
    let large = fixed_policy(&client, &base, 4_000, json!({"stackable": true})).await;
    let floor = fixed_policy(&client, &base, 9_000, json!({"minimumOrderAmount": 60_000})).await;
    let a = coupon(&client, &base, exclusive, user).await;
    let b = coupon(&client, &base, small, user).await;
    let c = coupon(&client, &base, large, user).await;
    let d = coupon(&client, &base, floor, user).await;

    // Nothing held yet: the two stackable ones together (6,000) beat the exclusive 5,000.
    let quoted = quote(&client, &base, user, Some("O-1")).await;
    assert_eq!(quoted["coupons"].as_array().map(Vec::len), Some(4), "{quoted}");
    let ids: Vec<i64> =
        quoted["coupons"].as_array().into_iter().flatten().filter_map(|c| c["couponId"].as_i64()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert_eq!(line(&quoted, d)["applicable"], false);
    assert_eq!(line(&quoted, d)["reason"], "MINIMUM_ORDER_NOT_MET");
    assert_eq!(line(&quoted, a)["discountAmount"], 5_000);
    assert_eq!(line(&quoted, a)["finalAmount"], 45_000);
    let mut best: Vec<i64> = quoted["best"]["couponIds"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_i64().expect("id"))
        .collect();
    best.sort_unstable();
    assert_eq!(best, vec![b, c], "{quoted}");
    assert_eq!(
        (quoted["best"]["discountAmount"].clone(), quoted["best"]["finalAmount"].clone()),
        (json!(6_000), json!(44_000))
    );
    assert_eq!(
        count(&env, "SELECT count(*) AS n FROM coupon_reservations").await,
        0,
        "a quote holds nothing"
    );
    assert_eq!(
        count(&env, "SELECT count(*) AS n FROM outbox").await,
        4,
        "and publishes nothing: four downloads"
    );

    // The order holds a stackable coupon: the exclusive one is refused, as its quote said.
    assert_eq!(reserve(&client, &base, user, b, "R-B", Some("O-1")).await.0, 200);
    let quoted = quote(&client, &base, user, Some("O-1")).await;
    assert_eq!(line(&quoted, a)["reason"], "COUPON_NOT_STACKABLE", "{quoted}");
    assert_eq!(quoted["best"]["couponIds"], json!([c]), "{quoted}");
    let (status, refused) = reserve(&client, &base, user, a, "R-A", Some("O-1")).await;
    assert_eq!((status, refused["code"].as_str()), (409, Some("COUPON_NOT_STACKABLE")), "{refused}");
    assert_eq!(reserve(&client, &base, user, c, "R-C", Some("O-1")).await.0, 200);
    // Another order is free; the exclusive coupon takes it whole.
    assert_eq!(reserve(&client, &base, user, a, "R-A2", Some("O-2")).await.0, 200);
    let (status, body) = post_as(
        &client,
        &format!("{base}/api/coupons/quote"),
        user + 1,
        json!({"userId": user, "orderAmount": 1}),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("UNAUTHORIZED_COUPON_ACCESS")), "{body}");
    let (status, body) = post_as(
        &client,
        &format!("{base}/api/coupons/quote"),
        user,
        json!({"userId": user, "orderAmount": 0}),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("INVALID_ORDER_AMOUNT")), "{body}");
    let (status, body) =
        post_as(&client, &format!("{base}/api/coupons/quote"), user, json!({"userId": user})).await;
    assert_eq!((status, body["fieldErrors"][0]["field"].as_str()), (400, Some("orderAmount")), "{body}");
}

/// What changes a policy's version (an admin change) and what changes without it (the budget's
/// use) both show in the next quote.
#[tokio::test]
async fn a_quote_follows_every_change_of_its_policies() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let (policy, coupons) = budgeted(&client, &base, 3).await;
    let (user, third) = coupons[2];
    let quoted = quote(&client, &base, user, None).await;
    assert_eq!(line(&quoted, third)["applicable"], true, "{quoted}");
    let name = line(&quoted, third)["couponName"].clone();

    for (i, (user, coupon)) in coupons[..2].iter().enumerate() {
        assert_eq!(reserve(&client, &base, *user, *coupon, &format!("F{i}"), None).await.0, 200);
    }
    let quoted = quote(&client, &base, user, None).await;
    assert_eq!(line(&quoted, third)["reason"], "BUDGET_EXHAUSTED", "the budget's use, read again: {quoted}");
    assert_eq!(line(&quoted, third)["couponName"], name);

    let url = format!("{base}/api/coupon-policies/{policy}");
    let (status, changed) =
        admin_patch(&client, &url, json!({"couponName": "Renamed", "budgetAmount": 20_000})).await;
    assert_eq!(status, 200, "{changed}");
    let quoted = quote(&client, &base, user, None).await;
    assert_eq!(line(&quoted, third)["couponName"], "Renamed", "{quoted}");
    assert_eq!(line(&quoted, third)["applicable"], true, "the raised budget has room: {quoted}");
    assert_eq!(quoted["best"]["couponIds"], json!([third]), "{quoted}");
}

#[tokio::test]
async fn a_budget_caps_what_a_campaign_gives_and_announces_its_thresholds_once() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let worker = start_worker(&env);
    let client = client();
    let (policy, coupons) = budgeted(&client, &base, 4).await;
    for (i, (user, coupon)) in coupons[..2].iter().enumerate() {
        assert_eq!(reserve(&client, &base, *user, *coupon, &format!("B{i}"), None).await.0, 200);
    }
    let (user, third) = coupons[2];
    let quoted = quote(&client, &base, user, None).await;
    assert_eq!(line(&quoted, third)["reason"], "BUDGET_EXHAUSTED", "{quoted}");
    let (status, refused) = reserve(&client, &base, user, third, "B2", None).await;
    assert_eq!((status, refused["code"].as_str()), (409, Some("BUDGET_EXHAUSTED")), "{refused}");
    let (_, stats) = admin_get(&client, &format!("{base}/api/coupon-policies/{policy}/statistics")).await;
    assert_eq!(
        (stats["budgetAmount"].clone(), stats["budgetUsed"].clone(), stats["budgetRemaining"].clone()),
        (json!(10_000), json!(8_000), json!(2_000)),
        "{stats}"
    );
    // A release gives its discount back.
    let (status, _) = answer(
        client
            .delete(format!("{base}/api/coupons/apply/B0"))
            .header("X-User-Id", "1")
            .send()
            .await
            .expect("release"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(reserve(&client, &base, user, third, "B3", None).await.0, 200, "room again");

    let topic = env.settings().kafka.topics.coupon_budget;
    let published = records(&env, &topic, 1, Duration::from_secs(30)).await;
    assert_eq!(published.len(), 1, "80 percent reached twice, announced once: {published:?}");
    assert_eq!(published[0].key, policy.to_string());
    assert_eq!(published[0].value["eventType"], "COUPON_BUDGET_THRESHOLD");
    assert_eq!(
        published[0].value["data"],
        json!({"policyId": policy, "threshold": 80, "budgetAmount": 10_000, "budgetUsed": 8_000})
    );
    let audit = format!(
        "SELECT count(*) AS n FROM coupon_policies p WHERE p.id = {policy} AND p.budget_used = \
         (SELECT sum(r.discount_amount) FROM coupon_reservations r JOIN coupon_issues c ON c.id = r.coupon_id \
          WHERE c.policy_id = p.id AND r.status IN ('PENDING', 'CONFIRMED'))"
    );
    assert_eq!(count(&env, &audit).await, 1, "the running sum is the sum of the live holds");
    worker.stop().await;
}

async fn job_done(client: &reqwest::Client, base: &str, policy: i64, job: i64) -> Value {
    for _ in 0..300 {
        let (status, progress) =
            admin_get(client, &format!("{base}/api/coupon-policies/{policy}/codes/jobs/{job}")).await;
        assert_eq!(status, 200, "{progress}");
        if progress["state"] != "RUNNING" {
            return progress;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {job} still running after 30 s");
}

#[tokio::test]
async fn unique_codes_are_generated_exported_and_redeemed_once() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let mut body = policy_body("CODE", None, 1);
    body["codeMode"] = json!("UNIQUE");
    body["couponCode"] = json!("NOT-ALLOWED");
    let (status, refused) = admin_post(&client, &format!("{base}/api/coupon-policies"), body.clone()).await;
    assert_eq!((status, refused["fieldErrors"][0]["field"].as_str()), (400, Some("couponCode")), "{refused}");
    body.as_object_mut().expect("body").remove("couponCode");
    let policy = create_policy(&client, &base, body).await;
    let (_, got) = admin_get(&client, &format!("{base}/api/coupon-policies/{policy}")).await;
    assert_eq!((got["codeMode"].as_str(), got["couponCode"].clone()), (Some("UNIQUE"), Value::Null));

    let codes_url = format!("{base}/api/coupon-policies/{policy}/codes");
    for (bad, field) in [
        (json!({"count": 0}), "count"),
        (json!({"count": 5, "prefix": "bf"}), "prefix"),
        (json!({"count": 5, "length": 7}), "length"),
    ] {
        let (status, refused) = admin_post(&client, &codes_url, bad.clone()).await;
        assert_eq!(
            (status, refused["fieldErrors"][0]["field"].as_str()),
            (400, Some(field)),
            "{bad}: {refused}"
        );
    }
    let shared = create_policy(&client, &base, policy_body("DOWNLOAD", None, 1)).await;
    let (status, refused) =
        admin_post(&client, &format!("{base}/api/coupon-policies/{shared}/codes"), json!({"count": 5})).await;
    assert_eq!((status, refused["code"].as_str()), (400, Some("INVALID_ISSUE_TYPE")), "{refused}");

    let (status, started) = admin_post(&client, &codes_url, json!({"count": 1000, "prefix": "BF"})).await;
    assert_eq!(status, 202, "{started}");
    let job = started["jobId"].as_i64().expect("jobId");
    let progress = job_done(&client, &base, policy, job).await;
    assert_eq!(progress, json!({"jobId": job, "state": "DONE", "generated": 1000, "total": 1000}));
    let (status, listed) = admin_get(&client, &format!("{codes_url}/jobs")).await;
    assert_eq!(
        (status, listed),
        (200, json!({"jobs": [progress.clone()]})),
        "the policy's jobs, newest first"
    );
    let (_, none) = admin_get(&client, &format!("{base}/api/coupon-policies/{shared}/codes/jobs")).await;
    assert_eq!(none, json!({"jobs": []}), "another policy's jobs are not listed");
    for url in [
        format!("{base}/api/coupon-policies/999999/codes/jobs"),
        format!("{base}/api/coupon-policies/999999/codes/jobs/{job}"),
        format!("{base}/api/coupon-policies/0/codes/jobs"),
    ] {
        let (status, refused) = admin_get(&client, &url).await;
        assert_eq!((status, refused["code"].as_str()), (404, Some("POLICY_NOT_FOUND")), "{url}: {refused}");
    }

    let export = |client: reqwest::Client, url: String| async move {
        let response = client
            .get(format!("{url}?format=csv"))
            .bearer_auth(coupon_testkit::ADMIN_TOKEN)
            .send()
            .await
            .expect("export");
        assert_eq!(response.status().as_u16(), 200);
        response.text().await.expect("csv")
    };
    let csv = export(client.clone(), codes_url.clone()).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "code,status,couponId,userId,redeemedAt");
    let codes: std::collections::HashSet<&str> =
        lines[1..].iter().map(|l| l.split(',').next().expect("code")).collect();
    assert_eq!(codes.len(), 1000, "distinct");
    let alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    assert!(
        codes
            .iter()
            .all(|c| c.len() == 14 && c.starts_with("BF") && c[2..].chars().all(|ch| alphabet.contains(ch)))
    );
    assert!(lines[1..].iter().all(|l| l.ends_with(",AVAILABLE,,,")), "{}", lines[1]);

    let mut sorted: Vec<&str> = codes.iter().copied().collect();
    sorted.sort_unstable();
    let (first, second) = (sorted[0], sorted[1]);
    let (status, issued) =
        download(&client, &base, 5, json!({"couponCode": first.to_lowercase(), "userId": 5})).await;
    assert_eq!(status, 201, "{issued}");
    let (status, again) = download(&client, &base, 6, json!({"couponCode": first, "userId": 6})).await;
    assert_eq!((status, again["code"].as_str()), (409, Some("COUPON_ALREADY_ISSUED")), "{again}");
    let validate = |code: &str| format!("{base}/api/coupons/validate/{code}");
    let (_, checked) =
        answer(client.get(validate(first)).header("X-User-Id", "6").send().await.expect("validate")).await;
    assert_eq!(checked["valid"], false, "{checked}");
    let (_, checked) =
        answer(client.get(validate(second)).header("X-User-Id", "6").send().await.expect("validate")).await;
    assert_eq!(checked["valid"], true, "{checked}");
    let csv = export(client.clone(), codes_url).await;
    let redeemed = csv.lines().find(|l| l.starts_with(first)).expect("line");
    let mut clash = policy_body("CODE", None, 1);
    clash["couponCode"] = json!(second);
    let (status, refused) = admin_post(&client, &format!("{base}/api/coupon-policies"), clash).await;
    assert_eq!((status, refused["code"].as_str()), (409, Some("DUPLICATE_COUPON_CODE")), "{refused}");
    let coupon = issued["couponId"].as_i64().expect("couponId");
    assert!(redeemed.starts_with(&format!("{first},REDEEMED,{coupon},5,")), "{redeemed}");
}
