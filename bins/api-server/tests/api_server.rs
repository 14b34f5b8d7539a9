//! api-server against the real PostgreSQL and Redis: readiness, start-up errors, migrations, and
//! the process lifecycle.

use std::time::Duration;

use api_server::Application;
use coupon_store_pg::migrate;
use coupon_store_pg::tls::PgTls;
use coupon_testkit::process::{
    assert_help_and_version, assert_refuses_setting, assert_starts_and_stops, closed_port, free_port,
};
use coupon_testkit::{TestDatabase, TestEnv};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_api-server");

/// Builds the application in-process on a free port; returns its base URL.
fn start(env: &TestEnv) -> String {
    let app = Application::build(env.settings()).expect("application builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    base
}

async fn get(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

fn check<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name} check in {body}"))
}

#[tokio::test]
async fn ready_when_postgres_and_redis_answer() {
    let env = TestEnv::new().await;
    let base = start(&env);
    let (status, body) = get(&format!("{base}/health/ready")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "UP");
    assert_eq!(check(&body, "postgres")["status"], "UP");
    assert_eq!(check(&body, "redis")["status"], "UP");
}

/// SPEC §10: issuing goes on without Redis, so the api-server stays ready (a Kubernetes Service
/// would drop every pod otherwise) and reports Redis as DEGRADED, with a reason code and no raw
/// error, and in `coupon_dependency_up`.
#[tokio::test]
async fn a_down_redis_leaves_the_server_ready_and_is_reported_as_degraded() {
    let redis_port = closed_port();
    let env = TestEnv::new().await.set("REDIS_PORT", redis_port.to_string()).set("REDIS_TIMEOUT", "1");
    let base = start(&env);
    let (status, body) = get(&format!("{base}/health/ready")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "DEGRADED");
    assert_eq!(check(&body, "redis")["status"], "DEGRADED");
    assert_eq!(check(&body, "redis")["reason"], "UNREACHABLE");
    assert!(!body.to_string().contains(&redis_port.to_string()), "no raw error in the body: {body}");
    assert_eq!(check(&body, "postgres")["status"], "UP");
    assert_eq!(get(&format!("{base}/health/live")).await.0, 200);
    let metrics = reqwest::get(format!("{base}/metrics")).await.expect("metrics").text().await.expect("text");
    for line in
        [r#"coupon_dependency_up{dependency="redis"} 0"#, r#"coupon_dependency_up{dependency="postgres"} 1"#]
    {
        assert!(metrics.lines().any(|l| l == line), "{line} missing from /metrics");
    }
}

#[tokio::test]
async fn readiness_names_a_down_postgres() {
    let env =
        TestEnv::new().await.set("DATABASE_PORT", closed_port().to_string()).set("DATABASE_TIMEOUT", "1");
    let base = start(&env);
    let (status, body) = get(&format!("{base}/health/ready")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "DOWN");
    assert_eq!(check(&body, "postgres")["status"], "DOWN");
    assert!(check(&body, "postgres")["reason"].is_string(), "{body}");
    assert_eq!(check(&body, "redis")["status"], "UP");
}

#[tokio::test]
async fn the_binary_starts_serves_and_drains_on_sigterm() {
    let port = free_port();
    let env = TestEnv::new().await.set("HTTP_PORT", port.to_string());
    assert_starts_and_stops(BIN, &env.vars, port).await;
}

#[tokio::test]
async fn the_binary_refuses_a_bad_setting_and_names_it() {
    let env = TestEnv::new().await.set("DATABASE_PORT", "five-four-three-two");
    assert_refuses_setting(BIN, &env.vars, "DATABASE_PORT").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_migrate_subcommand_builds_the_schema_and_is_idempotent() {
    let db = TestDatabase::empty().await;
    let env = TestEnv::with_database(db.clone());
    for _ in 0..2 {
        let status = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(BIN).arg("migrate").env_clear().envs(&env.vars).status(),
        )
        .await
        .expect("migrate finishes")
        .expect("run migrate");
        assert!(status.success());
    }
    assert!(migrate::pending(&db.connection_string(), &PgTls::default()).await.expect("pending").is_empty());
}

#[test]
fn help_and_version_answer_without_configuration() {
    assert_help_and_version(BIN, "api-server", env!("CARGO_PKG_VERSION"), &["serve", "migrate"]);
}
