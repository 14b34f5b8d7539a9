//! The admin console (SPEC §11.8): its files as the api-server serves them, and the console itself
//! in a real browser (Debian's Chromium driven by Playwright, `tests/console/console.mjs`) against
//! an api-server on a database of its own.

use std::path::Path;
use std::time::Duration;

use coupon_e2e::*;
use coupon_testkit::{ADMIN_TOKEN, TestEnv};

#[tokio::test]
async fn the_console_is_served_from_the_binary_with_a_strict_content_security_policy() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let client = client();
    let page = client.get(format!("{base}/admin")).send().await.expect("page");
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().expect("ascii").to_owned();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    let html = page.text().await.expect("html");
    for asset in ["app.js", "style.css", "chart.umd.min.js"] {
        assert!(html.contains(&format!("/admin/assets/{asset}")), "the page loads {asset}");
        let served = client.get(format!("{base}/admin/assets/{asset}")).send().await.expect("asset");
        assert_eq!(served.status(), 200, "{asset}");
    }
    assert!(!html.contains("http://") && !html.contains("https://"), "nothing is fetched from elsewhere");
    let (status, body) =
        answer(client.get(format!("{base}/admin/assets/secret.txt")).send().await.expect("missing")).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("NOT_FOUND")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_an_admin_uses_every_page_of_the_console_against_the_real_stack() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    // A dead letter for the DLQ page: user 77's payment for a reservation not made yet.
    let worker = start_worker(&env);
    let client = client();
    let policy = create_policy(&client, &base, policy_body("DOWNLOAD", None, 1)).await;
    let dead = coupon(&client, &base, policy, 77).await;
    wait_for_ready_worker(&env).await;
    let topic = env.settings().kafka.topics.payment_completed;
    produce(&env, &topic, &dead.to_string(), &payment_completed("console-early", "R-CONSOLE", dead, 77))
        .await;
    assert_eq!(records(&env, &format!("{topic}.DLQ"), 1, Duration::from_secs(20)).await.len(), 1);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("console/console.mjs");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&base)
        .arg(ADMIN_TOKEN)
        .env("CONSOLE_DLQ_COUPON", dead.to_string())
        .output()
        .await
        .expect("node runs (deploy/local/test.sh installs Node.js, Chromium and the console's packages)");
    assert!(
        output.status.success(),
        "the console test failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(count(&env, "SELECT count(*) AS n FROM coupon_policies WHERE NOT is_active").await, 1);
    let revoked = "SELECT count(*) AS n FROM coupon_issues WHERE user_id = 4242 AND status = 'CANCELLED'";
    assert_eq!(count(&env, revoked).await, 1);
    let used = format!("SELECT count(*) AS n FROM coupon_issues WHERE id = {dead} AND status = 'USED'");
    assert_eq!(
        count_until(&env, &used, 1, Duration::from_secs(20)).await,
        1,
        "the replayed payment confirms"
    );
    worker.stop().await;
}
