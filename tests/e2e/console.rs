//! The admin console (SPEC §11.8): its files as the api-server serves them, and the console itself
//! in a real browser (Debian's Chromium driven by Playwright, `tests/console/console.mjs`) against
//! an api-server on a database of its own.

use std::path::Path;

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
async fn in_chromium_an_admin_signs_in_creates_a_policy_and_sees_a_download_live() {
    let env = TestEnv::new().await;
    let base = start_api(&env);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("console/console.mjs");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&base)
        .arg(ADMIN_TOKEN)
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
    assert_eq!(count(&env, "SELECT count(*) AS n FROM coupon_issues").await, 1);
}
