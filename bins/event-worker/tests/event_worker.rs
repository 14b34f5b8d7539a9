//! event-worker against the real PostgreSQL and Kafka broker: topic creation, readiness, and the
//! process lifecycle.

use std::time::Duration;

use coupon_events_kafka::broker::{Broker, BrokerConfig};
use coupon_testkit::TestEnv;
use coupon_testkit::process::{
    assert_help_and_version, assert_starts_and_stops, closed_port, free_port, wait_for_ready,
};
use event_worker::App;

const BIN: &str = env!("CARGO_BIN_EXE_event-worker");

#[tokio::test]
async fn creates_every_topic_with_three_partitions_then_reports_ready_and_stops() {
    let env = TestEnv::new().await;
    let settings = env.settings();
    let app = App::build(settings.clone()).expect("worker builds");
    let url = format!("http://127.0.0.1:{}/health/ready", app.admin_port());
    let stop = app.shutdown_token();
    let running = tokio::spawn(app.run_until_stopped());

    let (status, body) = wait_for_ready(&url, Duration::from_secs(30)).await;
    assert_eq!(status, 200, "{body}");

    let broker = Broker::connect(&BrokerConfig {
        bootstrap_servers: settings.kafka.bootstrap_servers.clone(),
        request_timeout: Duration::from_secs(10),
        client_id: "test".into(),
    })
    .await
    .expect("broker");
    let topics = settings.kafka.topics.all_with_dlq();
    assert_eq!(topics.len(), 14);
    for topic in &topics {
        assert_eq!(broker.partitions(topic).await.expect("metadata"), Some(3), "{topic}");
        // SPEC §10: event topics keep 7 days, DLQs 30.
        let days = if topic.ends_with(".DLQ") { 30 } else { 7 };
        let retention = coupon_events_kafka::admin::retention_of(
            &settings.kafka.bootstrap_servers,
            topic,
            Duration::from_secs(10),
        )
        .await
        .expect("describe configs");
        assert_eq!(retention, Some(Duration::from_secs(days * 86_400)), "{topic}");
    }

    stop.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(10), running).await.expect("stops in time");
    assert!(outcome.expect("task").is_ok());
}

#[tokio::test]
async fn reports_kafka_down_without_hanging_and_still_stops() {
    let env = TestEnv::new()
        .await
        .set("KAFKA_BOOTSTRAP_SERVERS", format!("127.0.0.1:{}", closed_port()))
        .set("KAFKA_REQUEST_TIMEOUT", "1");
    let app = App::build(env.settings()).expect("worker builds while Kafka is down");
    let url = format!("http://127.0.0.1:{}/health/ready", app.admin_port());
    let stop = app.shutdown_token();
    let running = tokio::spawn(app.run_until_stopped());

    let (status, body) = wait_for_ready(&url, Duration::from_secs(2)).await;
    assert_eq!(status, 503, "{body}");
    let kafka = body["checks"].as_array().and_then(|c| c.iter().find(|c| c["name"] == "kafka")).cloned();
    assert_eq!(kafka.map(|k| k["status"].clone()), Some("DOWN".into()), "{body}");

    stop.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(5), running).await.expect("stops while retrying");
    assert!(outcome.expect("task").is_ok());
}

#[tokio::test]
async fn the_binary_starts_and_stops_cleanly_on_sigterm() {
    let port = free_port();
    let env = TestEnv::new().await.set("WORKER_ADMIN_PORT", port.to_string());
    assert_starts_and_stops(BIN, &env.vars, port).await;
}

#[test]
fn help_and_version_answer_without_configuration() {
    assert_help_and_version(BIN, "event-worker", env!("CARGO_PKG_VERSION"), &["serve", "dlq"]);
}
