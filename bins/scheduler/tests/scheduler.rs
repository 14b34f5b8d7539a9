//! scheduler against the real PostgreSQL: readiness and the process lifecycle.

use coupon_testkit::TestEnv;
use coupon_testkit::process::{
    assert_help_and_version, assert_refuses_setting, assert_starts_and_stops, free_port,
};

const BIN: &str = env!("CARGO_BIN_EXE_scheduler");

#[tokio::test]
async fn the_binary_starts_and_stops_cleanly_on_sigterm() {
    let port = free_port();
    let env = TestEnv::new().await.set("SCHEDULER_ADMIN_PORT", port.to_string());
    assert_starts_and_stops(BIN, &env.vars, port).await;
}

#[tokio::test]
async fn the_binary_refuses_an_invalid_cron_and_names_it() {
    let env = TestEnv::new().await.set("SCHEDULER_EXPIRY_CRON", "every night");
    assert_refuses_setting(BIN, &env.vars, "SCHEDULER_EXPIRY_CRON").await;
}

#[test]
fn help_and_version_answer_without_configuration() {
    assert_help_and_version(BIN, "scheduler", env!("CARGO_PKG_VERSION"), &["--version"]);
}
