//! The scheduler as operators run it: two instances side by side with every job due each second.
//! A reservation times out and its coupon can be held again; a late payment follows SPEC §4.4 in
//! both branches; and the job history shows that the two never ran one job at the same time.

use std::time::Duration;

use coupon_e2e::*;
use coupon_testkit::TestEnv;
use serde_json::json;

/// Waits until the reservation is no longer PENDING.
async fn timed_out(env: &TestEnv, reservation: &str) {
    let sql = format!(
        "SELECT count(*) AS n FROM coupon_reservations WHERE reservation_id = '{reservation}' AND status = 'EXPIRED'"
    );
    for _ in 0..100 {
        if count(env, &sql).await == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{reservation} was not timed out within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_schedulers_time_out_reservations_without_running_a_job_twice() {
    let mut env =
        TestEnv::new().await.set("COUPON_RESERVATION_TIMEOUT", "2s").set("SCHEDULER_ADMIN_PORT", "0");
    for job in ["RESERVATION_TIMEOUT", "EXPIRY", "STATISTICS"] {
        env = env.set(&format!("SCHEDULER_{job}_CRON"), "* * * * * *");
    }
    let base = start_api(&env);
    let client = client();
    let policy = create_policy(&client, &base, policy_body("DOWNLOAD", None, 1)).await;
    let mut coupons = Vec::new();
    for user in [1, 2] {
        let (status, body) =
            download(&client, &base, user, json!({"couponPolicyId": policy, "userId": user})).await;
        assert_eq!(status, 201, "{body}");
        coupons.push(body["couponId"].as_i64().expect("couponId"));
    }
    let reserve_url = format!("{base}/api/coupons/reserve");
    let use_url = format!("{base}/api/coupons/use");
    let hold = |rid: &str, user: i64, coupon: i64| json!({"reservationId": rid, "userId": user, "couponId": coupon, "orderAmount": 10_000, "orderId": format!("O-{rid}")});
    assert_eq!(post_as(&client, &reserve_url, 1, hold("A1", 1, coupons[0])).await.0, 200);
    assert_eq!(post_as(&client, &reserve_url, 2, hold("B1", 2, coupons[1])).await.0, 200);

    let mut stops = Vec::new();
    for _ in 0..2 {
        let app = scheduler::App::build(env.settings()).expect("scheduler builds");
        stops.push(app.shutdown_token());
        tokio::spawn(app.run_until_stopped());
    }
    timed_out(&env, "A1").await;
    timed_out(&env, "B1").await;

    // B's coupon is free again and taken by a new checkout; A's stays free.
    let (status, body) = post_as(&client, &reserve_url, 2, hold("B2", 2, coupons[1])).await;
    assert_eq!(status, 200, "the timed-out coupon can be reserved again: {body}");
    let (status, late) =
        post_as(&client, &use_url, 1, json!({"reservationId": "A1", "orderId": "O-A1", "paymentId": "P-A1"}))
            .await;
    assert_eq!((status, &late["lateConfirmation"]), (200, &json!(true)), "honoured: {late}");
    let (status, refused) =
        post_as(&client, &use_url, 2, json!({"reservationId": "B1", "orderId": "O-B1", "paymentId": "P-B1"}))
            .await;
    assert_eq!((status, refused["code"].as_str()), (410, Some("RESERVATION_EXPIRED")), "{refused}");

    tokio::time::sleep(Duration::from_secs(2)).await;
    for stop in &stops {
        stop.cancel();
    }
    let overlaps = count(
        &env,
        "SELECT count(*) AS n FROM job_runs a JOIN job_runs b ON a.job_name = b.job_name AND a.id < b.id \
         WHERE a.started_at < b.finished_at AND b.started_at < a.finished_at",
    )
    .await;
    assert_eq!(overlaps, 0, "no job ran on both schedulers at once");
    let doubled = count(
        &env,
        "SELECT count(*) AS n FROM (SELECT job_name FROM job_runs \
         GROUP BY job_name, date_trunc('second', started_at) HAVING count(*) > 1) t",
    )
    .await;
    assert_eq!(doubled, 0, "each tick ran once, on one of the two");
    assert!(count(&env, "SELECT count(*) AS n FROM job_runs WHERE job_name = 'statistics'").await >= 2);
    assert_eq!(
        count(&env, "SELECT count(*) AS n FROM outbox WHERE event_type = 'COUPON_CANCELLED'").await,
        2,
        "one coupon.cancelled per timeout"
    );
}
