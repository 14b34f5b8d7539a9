//! Two-phase use and the wallet over HTTP, as the order service and the user's app call them:
//! SPEC §4.5's discount vectors through `reserve`, every refusal code, the release and use
//! endpoints, admin job runs, and wallet paging that never skips or repeats a coupon.

use coupon_domain::clock::{Clock, SystemClock};
use std::collections::HashSet;

use coupon_e2e::*;
use coupon_testkit::{ADMIN_TOKEN, TestEnv};
use serde_json::{Value, json};

/// A policy with this discount; returns its id.
async fn discount_policy(client: &reqwest::Client, base: &str, rule: Value) -> i64 {
    let mut body = policy_body("DOWNLOAD", None, 1);
    for (k, v) in rule.as_object().expect("rule") {
        body[k] = v.clone();
    }
    create_policy(client, base, body).await
}

async fn reserve(client: &reqwest::Client, base: &str, user: i64, body: Value) -> (u16, Value) {
    post_as(client, &format!("{base}/api/coupons/reserve"), user, body).await
}

#[tokio::test]
async fn the_spec_discount_vectors_through_reserve() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let vectors = [
        (
            json!({"discountType": "PERCENTAGE", "discountValue": 10, "maxDiscountAmount": null}),
            50_000,
            5_000,
        ),
        (
            json!({"discountType": "PERCENTAGE", "discountValue": 20, "maxDiscountAmount": 10_000}),
            100_000,
            10_000,
        ),
        (
            json!({"discountType": "FIXED_AMOUNT", "discountValue": 10_000, "maxDiscountAmount": null}),
            5_000,
            5_000,
        ),
        (
            json!({"discountType": "PERCENTAGE", "discountValue": 12.5, "maxDiscountAmount": null}),
            40_000,
            5_000,
        ),
        (
            json!({"discountType": "PERCENTAGE", "discountValue": 10, "maxDiscountAmount": null}),
            12_345,
            1_234,
        ),
    ];
    for (i, (rule, order, discount)) in vectors.into_iter().enumerate() {
        let user = 100 + i64::try_from(i).expect("index");
        let policy = discount_policy(&client, &base, rule.clone()).await;
        let id = coupon(&client, &base, policy, user).await;
        let body =
            json!({"reservationId": format!("V{i}"), "userId": user, "couponId": id, "orderAmount": order});
        let (status, held) = reserve(&client, &base, user, body).await;
        assert_eq!(status, 200, "{rule} {held}");
        assert_eq!(held["discountAmount"], json!(discount), "{rule} on {order}");
        assert_eq!(held["finalAmount"], json!(order - discount));
        assert_eq!(held["status"], "PENDING");
    }

    let policy = discount_policy(&client, &base, json!({"minimumOrderAmount": 30_000})).await;
    let id = coupon(&client, &base, policy, 7).await;
    let at = |amount: i64, rid: &str| json!({"reservationId": rid, "userId": 7, "couponId": id, "orderAmount": amount});
    let (status, body) = reserve(&client, &base, 7, at(29_999, "M1")).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("MINIMUM_ORDER_NOT_MET")), "{body}");
    let (status, body) = reserve(&client, &base, 7, at(0, "M2")).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("INVALID_ORDER_AMOUNT")), "{body}");
    let (status, body) = reserve(&client, &base, 7, at(30_000, "M3")).await;
    assert_eq!((status, &body["discountAmount"]), (200, &json!(3_000)), "minimum exactly met: {body}");
}

#[tokio::test]
async fn reserve_apply_use_release_and_their_refusals() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let policy = discount_policy(&client, &base, json!({})).await;
    let (mine, other) = (coupon(&client, &base, policy, 1).await, coupon(&client, &base, policy, 2).await);
    let body = |rid: &str, coupon: i64, amount: i64| json!({"reservationId": rid, "userId": 1, "couponId": coupon, "orderAmount": amount, "orderId": "ORDER-1"});
    let code = |(status, body): (u16, Value)| (status, body["code"].as_str().unwrap_or_default().to_owned());

    let (status, applied) =
        post_as(&client, &format!("{base}/api/coupons/apply"), 1, body("R1", mine, 40_000)).await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(
        (applied["couponName"].as_str(), applied["discountAmount"].as_i64()),
        (Some("Black Friday"), Some(4_000))
    );
    // SPEC §11.2: a RESERVED coupon shows its live reservation's order and discount.
    let wallet = |user: i64, status: &'static str| {
        client
            .get(format!("{base}/api/coupons/users/{user}?status={status}"))
            .header("X-User-Id", user.to_string())
            .send()
    };
    let (status, held) = answer(wallet(1, "RESERVED").await.expect("request")).await;
    assert_eq!(status, 200, "{held}");
    let held = &held["coupons"][0];
    assert_eq!(
        (&held["couponId"], &held["reservationId"], &held["orderId"], &held["discountAmount"]),
        (&json!(mine), &json!("R1"), &json!("ORDER-1"), &json!(4000)),
        "{held}"
    );
    let (status, again) = reserve(&client, &base, 1, body("R1", mine, 40_000)).await;
    assert_eq!(
        (status, &again["reservedAt"]),
        (200, &applied["reservedAt"]),
        "the same request, the same answer"
    );
    assert_eq!(
        code(reserve(&client, &base, 1, body("R1", mine, 50_000)).await),
        (409, "COUPON_NOT_AVAILABLE".into())
    );
    assert_eq!(
        code(reserve(&client, &base, 1, body("R2", mine, 40_000)).await),
        (409, "COUPON_NOT_AVAILABLE".into())
    );
    assert_eq!(
        code(reserve(&client, &base, 1, body("R3", other, 40_000)).await),
        (403, "UNAUTHORIZED_COUPON_ACCESS".into())
    );
    assert_eq!(
        code(reserve(&client, &base, 2, body("R4", mine, 40_000)).await),
        (403, "UNAUTHORIZED_COUPON_ACCESS".into())
    );
    assert_eq!(
        code(reserve(&client, &base, 1, body("R5", 999_999, 40_000)).await),
        (404, "COUPON_NOT_FOUND".into())
    );
    assert_eq!(
        code(reserve(&client, &base, 1, body("bad id!", mine, 40_000)).await),
        (400, "VALIDATION_ERROR".into())
    );
    let no_user = client
        .post(format!("{base}/api/coupons/reserve"))
        .json(&body("R6", mine, 1))
        .send()
        .await
        .expect("request");
    assert_eq!(code(answer(no_user).await), (401, "UNAUTHENTICATED".into()));

    let use_url = format!("{base}/api/coupons/use");
    let payment = |pay: &str| json!({"reservationId": "R1", "orderId": "ORDER-1", "paymentId": pay});
    assert_eq!(
        code(post_as(&client, &use_url, 1, json!({"reservationId": "NOPE", "orderId": "O"})).await),
        (404, "RESERVATION_NOT_FOUND".into())
    );
    assert_eq!(
        code(
            post_as(
                &client,
                &use_url,
                1,
                json!({"reservationId": "R1", "orderId": "ORDER-2", "paymentId": "P1"})
            )
            .await
        ),
        (409, "COUPON_NOT_AVAILABLE".into()),
        "another order"
    );
    let (status, used) = post_as(&client, &use_url, 1, payment("P1")).await;
    assert_eq!((status, used["status"].as_str()), (200, Some("CONFIRMED")), "{used}");
    assert_eq!(post_as(&client, &use_url, 1, payment("P1")).await.0, 200, "idempotent");
    assert_eq!(code(post_as(&client, &use_url, 1, payment("P2")).await), (409, "COUPON_ALREADY_USED".into()));
    let release = |rid: &str, user: i64| {
        client.delete(format!("{base}/api/coupons/apply/{rid}")).header("X-User-Id", user.to_string()).send()
    };
    assert_eq!(
        code(answer(release("R1", 1).await.expect("request")).await),
        (409, "COUPON_ALREADY_USED".into())
    );

    // Hold and release the other coupon, by both paths.
    let (status, _) = reserve(
        &client,
        &base,
        2,
        json!({"reservationId": "S1", "userId": 2, "couponId": other, "orderAmount": 10_000}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        code(answer(release("S1", 1).await.expect("request")).await),
        (403, "UNAUTHORIZED_COUPON_ACCESS".into())
    );
    let (status, released) = answer(
        client
            .delete(format!("{base}/api/coupons/reserve/S1"))
            .header("X-User-Id", "2")
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!((status, released["status"].as_str()), (200, Some("CANCELLED")), "{released}");
    assert_eq!(answer(release("S1", 2).await.expect("request")).await.0, 200, "releasing twice is harmless");
    let (_, freed) = answer(wallet(2, "AVAILABLE").await.expect("request")).await;
    let freed = &freed["coupons"][0];
    assert_eq!(
        (&freed["status"], &freed["reservationId"], &freed["orderId"], &freed["discountAmount"]),
        (&json!("ISSUED"), &Value::Null, &Value::Null, &Value::Null),
        "a released coupon forgets the hold: {freed}"
    );
    assert_eq!(
        code(answer(release("NOPE", 2).await.expect("request")).await),
        (404, "RESERVATION_NOT_FOUND".into())
    );

    let (status, totals) = answer(
        client
            .get(format!("{base}/api/coupons/users/1/statistics"))
            .header("X-User-Id", "1")
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        totals,
        json!({"userId": 1, "totalCoupons": 1, "availableCoupons": 0, "usedCoupons": 1, "expiredCoupons": 0, "totalSavedAmount": 4000})
    );
    assert_eq!(
        count(&env, "SELECT count(*) AS n FROM outbox WHERE event_type IN ('COUPON_RESERVED', 'COUPON_USED', 'COUPON_CANCELLED')").await,
        4,
        "reserved ×2, used, cancelled: one event per change"
    );
}

#[tokio::test]
async fn wallet_pages_see_each_coupon_once_for_every_filter() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let policy = discount_policy(&client, &base, json!({"maxIssuePerUser": 1000})).await;
    // 1,000 coupons of user 5 in every state, one per slot (arranged with SQL).
    let mut conn = env.database.connect().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "INSERT INTO coupon_issues (policy_id, user_id, user_slot, status, issued_at, expires_at, reservation_id, \
                                        reserved_at, used_at) \
             SELECT {policy}, 5, s, st, now() - interval '40 days', \
                    CASE WHEN s % 6 = 1 THEN now() - interval '1 day' ELSE now() + interval '3 days' END, \
                    CASE WHEN st = 'RESERVED' THEN 'W' || s END, CASE WHEN st = 'RESERVED' THEN now() END, \
                    CASE WHEN st = 'USED' THEN now() END \
             FROM generate_series(1, 1000) s, \
                  LATERAL (SELECT (ARRAY['ISSUED','ISSUED','RESERVED','USED','EXPIRED','CANCELLED'])[s % 6 + 1] AS st) t"
        )),
        &mut conn,
    )
    .await
    .expect("coupons");
    let expected = [
        ("", "TRUE"),
        ("AVAILABLE", "status = 'ISSUED' AND expires_at >= now()"),
        ("UNUSED", "status = 'RESERVED' OR (status = 'ISSUED' AND expires_at >= now())"),
        ("RESERVED", "status = 'RESERVED'"),
        ("USED", "status = 'USED'"),
        ("EXPIRED", "status = 'EXPIRED' OR (status = 'ISSUED' AND expires_at < now())"),
    ];
    for (filter, predicate) in expected {
        let want = count(
            &env,
            &format!("SELECT count(*) AS n FROM coupon_issues WHERE user_id = 5 AND ({predicate})"),
        )
        .await;
        let mut seen = HashSet::new();
        let mut cursor: Option<i64> = None;
        let mut pages = 0;
        loop {
            let mut url = format!("{base}/api/coupons/users/5?limit=7");
            if !filter.is_empty() {
                url.push_str(&format!("&status={filter}"));
            }
            if let Some(c) = cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let (status, page) =
                answer(client.get(url).header("X-User-Id", "5").send().await.expect("request")).await;
            assert_eq!(status, 200, "{page}");
            let coupons = page["coupons"].as_array().expect("coupons");
            assert!(coupons.len() <= 7);
            for c in coupons {
                assert!(seen.insert(c["couponId"].as_i64().expect("id")), "{filter}: a coupon seen twice");
                if filter == "EXPIRED" {
                    assert_eq!(c["status"], "EXPIRED", "date-expired coupons read as EXPIRED");
                }
            }
            pages += 1;
            if page["hasMore"] != json!(true) {
                assert!(page["nextCursor"].is_null());
                break;
            }
            cursor = page["nextCursor"].as_i64();
        }
        assert_eq!(i64::try_from(seen.len()).expect("len"), want, "filter {filter:?} over {pages} pages");
    }
    let (status, body) = answer(
        client
            .get(format!("{base}/api/coupons/users/5?status=NEW"))
            .header("X-User-Id", "5")
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("VALIDATION_ERROR")));
    let (status, _) = answer(
        client
            .get(format!("{base}/api/coupons/users/5"))
            .header("X-User-Id", "6")
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 403);
    let (status, soon) = answer(
        client
            .get(format!("{base}/api/coupons/users/5/expiring?days=7&limit=100"))
            .header("X-User-Id", "5")
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 200);
    let soon = soon["coupons"].as_array().expect("coupons");
    assert_eq!(soon.len(), 100, "capped by limit");
    assert!(soon.iter().all(|c| c["status"] == "ISSUED"));
}

#[tokio::test]
async fn admins_run_jobs_and_read_daily_statistics() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let policy = discount_policy(&client, &base, json!({})).await;
    coupon(&client, &base, policy, 1).await;
    let (status, run) =
        admin_post(&client, &format!("{base}/api/admin/jobs/statistics/run"), json!({})).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(
        (run["job"].as_str(), run["affected"].as_i64()),
        (Some("statistics"), Some(2)),
        "yesterday and today"
    );
    for job in ["reservation-timeout", "expiry"] {
        assert_eq!(
            admin_post(&client, &format!("{base}/api/admin/jobs/{job}/run"), json!({})).await.0,
            200,
            "{job}"
        );
    }
    let (status, body) = admin_post(&client, &format!("{base}/api/admin/jobs/cleanup/run"), json!({})).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("NOT_FOUND")));

    // The history the console shows: each job, its runs newest first.
    let (status, history) = admin_get(&client, &format!("{base}/api/admin/jobs")).await;
    assert_eq!(status, 200, "{history}");
    let jobs = history["jobs"].as_array().expect("jobs");
    let names: Vec<&str> = jobs.iter().filter_map(|j| j["name"].as_str()).collect();
    assert_eq!(names, ["reservation-timeout", "expiry", "statistics"]);
    let statistics = &jobs[2]["lastRuns"][0];
    assert_eq!(
        (statistics["trigger"].as_str(), statistics["outcome"].as_str(), statistics["affected"].as_i64()),
        (Some("MANUAL"), Some("SUCCEEDED"), Some(2)),
        "{history}"
    );
    assert!(jobs.iter().all(|j| j["lastRuns"].as_array().is_some_and(|runs| runs.len() == 1)), "{history}");
    let unauthorised =
        client.post(format!("{base}/api/admin/jobs/expiry/run")).send().await.expect("request");
    assert_eq!(unauthorised.status().as_u16(), 401);

    let today = SystemClock.now().date_naive();
    let (status, daily) = admin_get(
        &client,
        &format!("{base}/api/statistics/daily?from={}&to={today}", today.pred_opt().expect("day")),
    )
    .await;
    assert_eq!(status, 200, "{daily}");
    let days = daily["days"].as_array().expect("days");
    let row = days.iter().find(|d| d["date"] == today.to_string()).expect("today's row");
    assert_eq!(row["totalIssued"], 1);
    assert_eq!(row["issueByHour"].as_object().map(serde_json::Map::len), Some(24));
    let (status, body) =
        admin_get(&client, &format!("{base}/api/statistics/daily?from={today}&to=2000-01-01")).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("VALIDATION_ERROR")));
}

/// SPEC §11.2: an admin revokes an ISSUED coupon (its slot free again, `coupon.cancelled` with
/// `ADMIN_REVOKED`, once); a held, used or expired coupon is refused with its state's code.
#[tokio::test]
async fn an_admin_revokes_an_issued_coupon_once_and_other_states_refuse() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let policy = discount_policy(&client, &base, json!({})).await;
    let [issued, held, used, expired] = [
        coupon(&client, &base, policy, 1).await,
        coupon(&client, &base, policy, 2).await,
        coupon(&client, &base, policy, 3).await,
        coupon(&client, &base, policy, 4).await,
    ];
    let revoke = async |id: i64, body: Value| {
        admin_post(&client, &format!("{base}/api/admin/coupons/{id}/revoke"), body).await
    };
    let why = json!({"reason": "issued to the wrong account", "revokedBy": "support-17"});

    let (status, revoked) = revoke(issued, why.clone()).await;
    assert_eq!((status, revoked["status"].as_str()), (200, Some("CANCELLED")), "{revoked}");
    let (status, again) = revoke(issued, why.clone()).await;
    assert_eq!(
        (status, again["status"].as_str()),
        (200, Some("CANCELLED")),
        "revoking twice answers the same"
    );
    let events = "SELECT count(*) AS n FROM outbox WHERE event_type = 'COUPON_CANCELLED' \
                  AND payload::jsonb #>> '{data,reason}' = 'ADMIN_REVOKED' \
                  AND payload::jsonb #>> '{data,revokedBy}' = 'support-17'";
    assert_eq!(count(&env, events).await, 1, "one event for one revoke");
    let (status, _) = download(&client, &base, 1, json!({"couponPolicyId": policy, "userId": 1})).await;
    assert_eq!(status, 201, "the revoked coupon's slot is free again");

    let (status, _) = reserve(
        &client,
        &base,
        2,
        json!({"reservationId": "RV-2", "userId": 2, "couponId": held, "orderAmount": 40_000}),
    )
    .await;
    assert_eq!(status, 200);
    reserve(
        &client,
        &base,
        3,
        json!({"reservationId": "RV-3", "userId": 3, "couponId": used, "orderAmount": 40_000}),
    )
    .await;
    let (status, _) = post_as(
        &client,
        &format!("{base}/api/coupons/use"),
        3,
        json!({"reservationId": "RV-3", "orderId": "O-3", "paymentId": "P-3"}),
    )
    .await;
    assert_eq!(status, 200);
    let past = format!(
        "WITH u AS (UPDATE coupon_issues SET issued_at = now() - interval '2 days', expires_at = now() - interval '1 day' WHERE id = {expired} RETURNING 1) \
         SELECT count(*) AS n FROM u"
    );
    assert_eq!(count(&env, &past).await, 1, "the coupon's date has passed");
    for (id, status, code) in [
        (held, 409, "COUPON_NOT_AVAILABLE"),
        (used, 409, "COUPON_ALREADY_USED"),
        (expired, 410, "COUPON_EXPIRED"),
        (999_999, 404, "COUPON_NOT_FOUND"),
    ] {
        let (got, body) = revoke(id, why.clone()).await;
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "coupon {id}: {body}");
    }
    let (status, body) = revoke(held, json!({"reason": " ", "revokedBy": "support-17"})).await;
    assert_eq!((status, body["fieldErrors"][0]["field"].as_str()), (400, Some("reason")), "{body}");
    let as_user = answer(
        client
            .post(format!("{base}/api/admin/coupons/{held}/revoke"))
            .header("X-User-Id", "2")
            .json(&why)
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!((as_user.0, as_user.1["code"].as_str()), (401, Some("UNAUTHENTICATED")));
    assert_eq!(
        count(&env, "SELECT count(*) AS n FROM coupon_issues WHERE status = 'CANCELLED'").await,
        1,
        "only the issued coupon was revoked"
    );
}

/// SPEC §11.2: an admin marks an ISSUED coupon used for an order (the discount of §4.5, one
/// `coupon.used` with `metadata.source` ADMIN), or confirms a held coupon's reservation.
#[tokio::test]
async fn an_admin_uses_an_issued_coupon_or_confirms_a_held_one() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let policy = discount_policy(&client, &base, json!({})).await;
    let (issued, held) = (coupon(&client, &base, policy, 1).await, coupon(&client, &base, policy, 2).await);
    let admin_use = async |id: i64, body: Value| {
        admin_post(&client, &format!("{base}/api/admin/coupons/{id}/use"), body).await
    };
    let body = |order: &str, amount: i64| json!({"orderId": order, "orderAmount": amount, "usedBy": "support-17", "reason": "order placed by phone"});

    let (status, error) = admin_use(issued, body("O-A1", 0)).await;
    assert_eq!((status, error["code"].as_str()), (400, Some("INVALID_ORDER_AMOUNT")), "{error}");
    let (status, used) = admin_use(issued, body("O-A1", 40_000)).await;
    assert_eq!(status, 200, "{used}");
    assert_eq!(
        (&used["status"], &used["orderId"], &used["discountAmount"]),
        (&json!("USED"), &json!("O-A1"), &json!(4000)),
        "{used}"
    );
    let (status, again) = admin_use(issued, body("O-A1", 40_000)).await;
    assert_eq!((status, &again["usedAt"]), (200, &used["usedAt"]), "the same use answers the same");
    let (status, other) = admin_use(issued, body("O-A2", 40_000)).await;
    assert_eq!((status, other["code"].as_str()), (409, Some("COUPON_ALREADY_USED")), "{other}");

    let (status, _) = reserve(
        &client,
        &base,
        2,
        json!({"reservationId": "RH-2", "userId": 2, "couponId": held, "orderAmount": 20_000, "orderId": "O-H"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, wrong) = admin_use(held, body("O-X", 20_000)).await;
    assert_eq!(
        (status, wrong["code"].as_str()),
        (409, Some("COUPON_NOT_AVAILABLE")),
        "held for another order"
    );
    let (status, confirmed) = admin_use(held, body("O-H", 99_999)).await;
    assert_eq!(
        (status, &confirmed["reservationId"], &confirmed["discountAmount"]),
        (200, &json!("RH-2"), &json!(2000)),
        "the hold's own discount: {confirmed}"
    );

    let by_admin = "SELECT count(*) AS n FROM outbox WHERE event_type = 'COUPON_USED' \
                    AND payload::jsonb #>> '{metadata,source}' = 'ADMIN'";
    assert_eq!(count(&env, by_admin).await, 2, "one coupon.used per use, both from ADMIN");
    let (status, missing) = admin_use(999_999, body("O-A1", 40_000)).await;
    assert_eq!((status, missing["code"].as_str()), (404, Some("COUPON_NOT_FOUND")));
}

/// SPEC §11.2: deactivating with `expireIssued=true` expires every ISSUED coupon of the policy in
/// batches (`coupon.expired` reason `POLICY_DEACTIVATED`), leaves held and used coupons to their
/// reservations, and a second call finds nothing left.
#[tokio::test]
async fn deactivating_a_policy_can_expire_its_issued_coupons_in_batches() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let policy = discount_policy(&client, &base, json!({})).await;
    let other = discount_policy(&client, &base, json!({})).await;
    let (held, used) = (coupon(&client, &base, policy, 1).await, coupon(&client, &base, policy, 2).await);
    let untouched = coupon(&client, &base, other, 3).await;
    reserve(
        &client,
        &base,
        1,
        json!({"reservationId": "D-1", "userId": 1, "couponId": held, "orderAmount": 40_000}),
    )
    .await;
    reserve(
        &client,
        &base,
        2,
        json!({"reservationId": "D-2", "userId": 2, "couponId": used, "orderAmount": 40_000}),
    )
    .await;
    let (status, _) = post_as(
        &client,
        &format!("{base}/api/coupons/use"),
        2,
        json!({"reservationId": "D-2", "orderId": "O-D2", "paymentId": "P-D2"}),
    )
    .await;
    assert_eq!(status, 200);
    // More coupons than one batch (500) holds.
    let bulk = format!(
        "WITH i AS (INSERT INTO coupon_issues (policy_id, user_id, user_slot, status, issued_at, expires_at) \
                    SELECT {policy}, g, 1, 'ISSUED', now(), now() + interval '30 days' FROM generate_series(100, 1299) g \
                    RETURNING 1) SELECT count(*) AS n FROM i"
    );
    assert_eq!(count(&env, &bulk).await, 1200);

    let delete = async |id: i64, query: &str| {
        answer(
            client
                .delete(format!("{base}/api/coupon-policies/{id}{query}"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("request"),
        )
        .await
    };
    let (status, body) = delete(policy, "?expireIssued=true").await;
    assert_eq!(
        (status, &body["isActive"], &body["expiredCoupons"]),
        (200, &json!(false), &json!(1200)),
        "{body}"
    );
    let statuses =
        format!("SELECT count(*) AS n FROM coupon_issues WHERE policy_id = {policy} AND status = 'EXPIRED'");
    assert_eq!(count(&env, &statuses).await, 1200);
    for (id, status) in [(held, "RESERVED"), (used, "USED"), (untouched, "ISSUED")] {
        let sql = format!("SELECT count(*) AS n FROM coupon_issues WHERE id = {id} AND status = '{status}'");
        assert_eq!(count(&env, &sql).await, 1, "coupon {id} stays {status}");
    }
    let events = "SELECT count(*) AS n FROM outbox WHERE event_type = 'COUPON_EXPIRED' \
                  AND payload::jsonb #>> '{data,reason}' = 'POLICY_DEACTIVATED' \
                  AND payload::jsonb #>> '{metadata,source}' = 'ADMIN'";
    assert_eq!(count(&env, events).await, 1200, "one coupon.expired per coupon");

    let (status, again) = delete(policy, "?expireIssued=true").await;
    assert_eq!((status, &again["expiredCoupons"]), (200, &json!(0)), "nothing left: {again}");
    let (status, plain) = delete(other, "").await;
    assert_eq!((status, plain.get("expiredCoupons")), (200, None), "{plain}");
    let (status, bad) = delete(other, "?expireIssued=maybe").await;
    assert_eq!((status, bad["code"].as_str()), (400, Some("INVALID_REQUEST")), "{bad}");
}
