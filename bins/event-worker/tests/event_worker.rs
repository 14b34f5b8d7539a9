//! event-worker against the real PostgreSQL and Kafka broker: topic creation, readiness, and the
//! process lifecycle.

use std::time::Duration;

use coupon_events_kafka::broker::Broker;
use coupon_testkit::TestEnv;
use coupon_testkit::broker::TlsBroker;
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

    let broker = Broker::connect(&coupon_wiring::broker_config(&settings, "test").expect("config"))
        .await
        .expect("broker");
    let topics = settings.kafka.topics.all_with_dlq();
    assert_eq!(topics.len(), 14);
    for topic in &topics {
        assert_eq!(broker.partitions(topic).await.expect("metadata"), Some(3), "{topic}");
        // SPEC §10: event topics keep 7 days, DLQs 30.
        let days = if topic.ends_with(".DLQ") { 30 } else { 7 };
        let retention = broker.retention_of(topic).await.expect("describe configs");
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

/// The worker under `KAFKA_SECURITY_PROTOCOL=SASL_SSL` against a broker behind TLS that requires
/// SCRAM: it creates its topics and is ready; with a wrong password it says why it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_creates_the_topics_and_a_refused_login_is_named_in_readiness() {
    let dir = std::env::temp_dir().join(format!("coupon-worker-sasl-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    coupon_testkit::certificates::generate(&dir);
    let broker = TlsBroker::start(&dir, &[("coupon", "worker-s3cret")]).await;
    let env = TestEnv::new().await;
    let secured = |password: &str| {
        let mut vars = env.vars.clone();
        for (key, value) in [
            ("KAFKA_BOOTSTRAP_SERVERS", format!("localhost:{}", broker.tls_port())),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL".to_owned()),
            ("KAFKA_SSL_CA", dir.join("ca.crt").to_string_lossy().into_owned()),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".to_owned()),
            ("KAFKA_SASL_USERNAME", "coupon".to_owned()),
            ("KAFKA_SASL_PASSWORD", password.to_owned()),
            ("KAFKA_REQUEST_TIMEOUT", "2".to_owned()),
        ] {
            vars.insert(key.to_owned(), value);
        }
        coupon_runtime::settings::Settings::from_env(vars).expect("settings")
    };
    for (password, expected) in [("worker-s3cret", None), ("not-the-password", Some("AUTH_FAILED"))] {
        let settings = secured(password);
        let app = App::build(settings).expect("worker builds");
        let url = format!("http://127.0.0.1:{}/health/ready", app.admin_port());
        let stop = app.shutdown_token();
        let running = tokio::spawn(app.run_until_stopped());
        let started = std::time::Instant::now();
        let (status, body) = loop {
            // Waits for 200 at most this long, then answers what it saw last.
            let (status, body) = wait_for_ready(&url, Duration::from_millis(300)).await;
            let kafka =
                body["checks"].as_array().and_then(|c| c.iter().find(|c| c["name"] == "kafka")).cloned();
            let reason = kafka.and_then(|k| k["reason"].as_str().map(str::to_owned));
            let settled = match expected {
                None => status == 200,
                Some(expected) => reason.as_deref() == Some(expected),
            };
            if settled || started.elapsed() > Duration::from_secs(30) {
                break (status, body);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        match expected {
            None => assert_eq!(status, 200, "ready over SASL_SSL: {body}"),
            Some(reason) => {
                assert_eq!(status, 503, "{body}");
                assert!(body.to_string().contains(reason), "{body}");
                assert!(!body.to_string().contains("not-the-password"), "{body}");
            }
        }
        stop.cancel();
        let outcome = tokio::time::timeout(Duration::from_secs(10), running).await.expect("stops in time");
        assert!(outcome.expect("task").is_ok());
    }
    std::fs::remove_dir_all(&dir).ok();
}
