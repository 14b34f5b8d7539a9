//! `Idempotency-Key` (SPEC §11.1) over HTTP against the real stores: replays, another body,
//! concurrent retries, per-caller scope, expiry, and answers lost after the commit (a dropped
//! connection, and api-server killed with SIGKILL).

use std::time::Duration;

use coupon_e2e::*;
use coupon_testkit::process::{Running, free_port};
use coupon_testkit::{ADMIN_TOKEN, TestEnv};
use diesel_async::SimpleAsyncConnection;
use serde_json::{Value, json};

const KEY: &str = "Idempotency-Key";

/// A write with a key: status, the `Idempotent-Replayed` header, and the body's bytes.
async fn send(request: reqwest::RequestBuilder, key: &str) -> (u16, bool, Vec<u8>) {
    let response = request.header(KEY, key).send().await.expect("request");
    let status = response.status().as_u16();
    let replayed = response.headers().get("Idempotent-Replayed").is_some_and(|v| v == "true");
    (status, replayed, response.bytes().await.expect("body").to_vec())
}

fn download_request(
    client: &reqwest::Client,
    base: &str,
    user: i64,
    body: &Value,
) -> reqwest::RequestBuilder {
    client.post(format!("{base}/api/coupons/download")).header("X-User-Id", user.to_string()).json(body)
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON body")
}

/// Holds the policy's row lock until dropped or released: the issue batch waits at its insert.
async fn lock_policy(env: &TestEnv, policy: i64) -> diesel_async::AsyncPgConnection {
    let mut conn = env.database.connect().await;
    conn.batch_execute(&format!("BEGIN; SELECT 1 FROM coupon_policies WHERE id = {policy} FOR UPDATE"))
        .await
        .expect("lock");
    conn
}

async fn wait_for_count(env: &TestEnv, sql: &str, at_least: i64) {
    let n = count_at_least(env, sql, at_least, Duration::from_secs(30)).await;
    assert!(n >= at_least, "{sql}: {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_gets_the_stored_answer_and_another_body_or_caller_does_not() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    // Five per user: without the key, a second download would issue a second coupon.
    let policy = create_policy(&client, &base, policy_body("DOWNLOAD", None, 5)).await;
    let body = json!({"couponPolicyId": policy, "userId": 7});

    let (status, replayed, first) = send(download_request(&client, &base, 7, &body), "k-1").await;
    assert_eq!((status, replayed), (201, false), "{}", json_of(&first));
    // The same body written differently is the same request.
    let reordered = json!({"userId": 7, "couponPolicyId": policy});
    let (status, replayed, again) = send(download_request(&client, &base, 7, &reordered), "k-1").await;
    assert_eq!((status, replayed), (201, true));
    assert_eq!(again, first, "the original answer, byte for byte");
    assert_eq!(
        count(&env, &format!("SELECT count(*) AS n FROM coupon_issues WHERE policy_id = {policy}")).await,
        1
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) AS n FROM idempotency_keys WHERE answer_status = 201 AND answered_at IS NOT NULL"
        )
        .await,
        1,
        "the answer was stored with the coupon"
    );

    let other = json!({"couponPolicyId": policy, "userId": 7, "extra": true});
    let (status, _, refused) = send(download_request(&client, &base, 7, &other), "k-1").await;
    assert_eq!(status, 422);
    assert_eq!(json_of(&refused)["code"], "IDEMPOTENCY_KEY_REUSED");

    // Another user's key of the same name is another key.
    let theirs = json!({"couponPolicyId": policy, "userId": 8});
    let (status, replayed, answer) = send(download_request(&client, &base, 8, &theirs), "k-1").await;
    assert_eq!((status, replayed), (201, false));
    assert_ne!(json_of(&answer)["couponId"], json_of(&first)["couponId"]);

    // A refusal is stored too (it changed nothing), and replayed.
    let missing = json!({"couponPolicyId": 999_999, "userId": 7});
    let (status, replayed, not_found) = send(download_request(&client, &base, 7, &missing), "k-2").await;
    assert_eq!((status, replayed), (404, false));
    let (status, replayed, again) = send(download_request(&client, &base, 7, &missing), "k-2").await;
    assert_eq!((status, replayed, again), (404, true, not_found));

    // A caller that is not authenticated is refused as usual and takes no key.
    let keys_before = count(&env, "SELECT count(*) AS n FROM idempotency_keys").await;
    let anonymous = client.post(format!("{base}/api/coupons/download")).json(&body);
    let (status, _, refused) = send(anonymous, "k-anonymous").await;
    assert_eq!((status, json_of(&refused)["code"].as_str()), (401, Some("UNAUTHENTICATED")));
    assert_eq!(count(&env, "SELECT count(*) AS n FROM idempotency_keys").await, keys_before);

    // Keys are 1-255 printable ASCII characters.
    let (status, _, invalid) = send(download_request(&client, &base, 7, &body), &"k".repeat(256)).await;
    assert_eq!((status, json_of(&invalid)["code"].as_str()), (400, Some("VALIDATION_ERROR")));
    assert_eq!(
        count(&env, &format!("SELECT count(*) AS n FROM coupon_issues WHERE policy_id = {policy}")).await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_with_one_key_make_one_effect() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let policy = create_policy(&client, &base, policy_body("DOWNLOAD", None, 5)).await;
    let body = json!({"couponPolicyId": policy, "userId": 7});
    let retries: Vec<_> = (0..20)
        .map(|_| {
            let request = download_request(&client, &base, 7, &body);
            tokio::spawn(async move { send(request, "burst").await })
        })
        .collect();
    let mut coupons = Vec::new();
    for retry in retries {
        let (status, _, bytes) = retry.await.expect("task");
        match status {
            201 => coupons.push(json_of(&bytes)["couponId"].as_i64().expect("couponId")),
            409 => assert_eq!(json_of(&bytes)["code"], "IDEMPOTENCY_IN_PROGRESS"),
            other => panic!("unexpected {other}: {}", String::from_utf8_lossy(&bytes)),
        }
    }
    assert!(!coupons.is_empty());
    coupons.dedup();
    assert_eq!(coupons.len(), 1, "every 201 names the one coupon");
    assert_eq!(
        count(&env, &format!("SELECT count(*) AS n FROM coupon_issues WHERE policy_id = {policy}")).await,
        1
    );

    // Checkout too: a reserve and a use retried with their keys change the coupon once each.
    let coupon = coupons[0];
    let reserve = json!({"reservationId": "R-IDEM", "userId": 7, "couponId": coupon, "orderAmount": 30000});
    let hold = || client.post(format!("{base}/api/coupons/reserve")).header("X-User-Id", "7").json(&reserve);
    let (status, replayed, held) = send(hold(), "reserve-1").await;
    assert_eq!((status, replayed), (200, false), "{}", json_of(&held));
    assert_eq!(send(hold(), "reserve-1").await, (200, true, held));
    let usage = json!({"reservationId": "R-IDEM", "orderId": "O-1"});
    let used = || client.post(format!("{base}/api/coupons/use")).header("X-User-Id", "7").json(&usage);
    let (status, _, first) = send(used(), "use-1").await;
    assert_eq!(status, 200, "{}", json_of(&first));
    assert_eq!(send(used(), "use-1").await, (200, true, first));
    assert_eq!(count(&env, "SELECT count(*) AS n FROM outbox WHERE event_type = 'COUPON_USED'").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_lost_with_its_connection_is_replayed_after_the_commit() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let policy = create_policy(&client, &base, policy_body("FIRST_COME", Some(100), 1)).await;
    let body = json!({"couponPolicyId": policy, "userId": 7});
    let lock = lock_policy(&env, policy).await;

    // The client gives up while the issue waits for the lock: its connection closes unanswered.
    let impatient = download_request(&client, &base, 7, &body).timeout(Duration::from_millis(500));
    assert!(impatient.header(KEY, "lost").send().await.is_err(), "the first answer never arrives");
    let (status, _, running) = send(download_request(&client, &base, 7, &body), "lost").await;
    assert_eq!((status, json_of(&running)["code"].as_str()), (409, Some("IDEMPOTENCY_IN_PROGRESS")));

    drop(lock);
    wait_for_count(&env, &format!("SELECT count(*) AS n FROM coupon_issues WHERE policy_id = {policy}"), 1)
        .await;
    let (status, replayed, answer) = send(download_request(&client, &base, 7, &body), "lost").await;
    assert_eq!((status, replayed), (201, true), "{}", json_of(&answer));
    let issued = count(&env, &format!("SELECT id AS n FROM coupon_issues WHERE policy_id = {policy}")).await;
    assert_eq!(json_of(&answer)["couponId"].as_i64(), Some(issued), "the coupon committed before");
}

/// This build's api-server as a process, with a 2 s lease so that a retry after a kill runs soon.
async fn api_process(env: &TestEnv, port: u16) -> Running {
    coupon_e2e::api_process(&binary("api-server"), &env.clone_with("COUPON_IDEMPOTENCY_LEASE", "2"), port)
        .await
}

/// api-server killed with SIGKILL right after the commit of a download, and during a direct
/// issue to 1,000 users: the retry after a restart gets the original 201 of the download, and the
/// direct issue resumes where it stopped, with every coupon once and the original coupon ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_committed_before_a_kill_are_replayed_and_a_direct_issue_resumes() {
    let env = TestEnv::new().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = client();
    let mut api = api_process(&env, port).await;
    let policy = create_policy(&client, &base, policy_body("FIRST_COME", Some(100), 1)).await;
    let body = json!({"couponPolicyId": policy, "userId": 7});

    let lock = lock_policy(&env, policy).await;
    let pending = tokio::spawn(send(download_request(&client, &base, 7, &body), "crash"));
    wait_for_count(&env, "SELECT count(*) AS n FROM idempotency_keys", 1).await;
    drop(lock);
    wait_for_count(&env, &format!("SELECT count(*) AS n FROM coupon_issues WHERE policy_id = {policy}"), 1)
        .await;
    api.kill().await;
    pending.abort();

    api = api_process(&env, port).await;
    let direct = create_policy(&client, &base, policy_body("DIRECT", None, 1)).await;
    let users: Vec<i64> = (1..=1000).collect();
    let issue = json!({"couponPolicyId": direct, "userIds": users, "issuedBy": "ops"});
    let direct_request =
        || client.post(format!("{base}/api/coupons/direct-issue")).bearer_auth(ADMIN_TOKEN).json(&issue);
    let (status, replayed, answer) = send(download_request(&client, &base, 7, &body), "crash").await;
    assert_eq!((status, replayed), (201, true), "{}", json_of(&answer));
    let issued = count(&env, &format!("SELECT id AS n FROM coupon_issues WHERE policy_id = {policy}")).await;
    assert_eq!(json_of(&answer)["couponId"].as_i64(), Some(issued));

    let running = tokio::spawn(send(direct_request(), "bulk"));
    let of_direct = format!("SELECT count(*) AS n FROM coupon_issues WHERE policy_id = {direct}");
    wait_for_count(&env, &of_direct, 50).await;
    api.kill().await;
    running.abort();
    let before = count(&env, &of_direct).await;
    assert!(before < 1000, "killed midway: {before}");

    api = api_process(&env, port).await;
    let resumed = loop {
        let (status, replayed, bytes) = send(direct_request(), "bulk").await;
        match status {
            409 => tokio::time::sleep(Duration::from_millis(500)).await,
            _ => break (status, replayed, json_of(&bytes)),
        }
    };
    assert_eq!((resumed.0, resumed.1), (201, false), "{}", resumed.2);
    let summary = resumed.2;
    assert_eq!((summary["successCount"].as_i64(), summary["failureCount"].as_i64()), (Some(1000), Some(0)));
    assert_eq!(count(&env, &of_direct).await, 1000, "each user's coupon once");
    let matching = summary["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["status"] == "SUCCESS")
        .map(|r| format!("({}, {})", r["userId"], r["couponId"]))
        .collect::<Vec<_>>()
        .join(", ");
    assert_eq!(
        count(
            &env,
            &format!(
                "SELECT count(*) AS n FROM coupon_issues c JOIN (VALUES {matching}) AS r(u, id) \
                 ON c.user_id = r.u AND c.id = r.id WHERE c.policy_id = {direct}"
            ),
        )
        .await,
        1000,
        "the answer names the coupons committed before the kill"
    );
    let (status, replayed, _) = send(direct_request(), "bulk").await;
    assert_eq!((status, replayed), (201, true));
    api.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_expire_after_their_time_to_live_and_the_expiry_job_prunes_them() {
    let env = TestEnv::new().await.set("COUPON_IDEMPOTENCY_TTL", "2s");
    let base = start_api(&env);
    let client = client();
    let create =
        |body: &Value| client.post(format!("{base}/api/coupon-policies")).bearer_auth(ADMIN_TOKEN).json(body);
    let first = policy_body("DOWNLOAD", None, 1);
    let (status, _, created) = send(create(&first), "policy-1").await;
    assert_eq!(status, 201);
    let (status, replayed, again) = send(create(&first), "policy-1").await;
    assert_eq!((status, replayed, &again), (201, true, &created));
    assert_eq!(count(&env, "SELECT count(*) AS n FROM coupon_policies").await, 1);

    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let mut second = first.clone();
    second["couponName"] = json!("Cyber Monday");
    let (status, replayed, fresh) = send(create(&second), "policy-1").await;
    assert_eq!((status, replayed), (201, false), "an expired key is free for any body");
    assert_ne!(json_of(&fresh)["id"], json_of(&created)["id"]);

    let (status, _, _) = send(create(&first), "policy-2").await;
    assert_eq!(status, 201);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (status, ran) = admin_post(&client, &format!("{base}/api/admin/jobs/expiry/run"), json!({})).await;
    assert_eq!(status, 200, "{ran}");
    assert_eq!(count(&env, "SELECT count(*) AS n FROM idempotency_keys").await, 0, "pruned");
}
