//! The whole service in one process, as the local stack runs it: api-server, event-worker and
//! scheduler built from one environment on ports the OS picks, against the real PostgreSQL, Redis
//! and Kafka broker. Driven only over HTTP, as operators and the platform see it.

use std::time::Duration;

use coupon_testkit::TestEnv;
use coupon_testkit::process::wait_for_ready;

async fn metrics(port: u16) -> String {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let response = reqwest::get(&url).await.expect("scrape");
    assert_eq!(response.status().as_u16(), 200);
    response.text().await.expect("text")
}

#[tokio::test]
async fn all_three_binaries_become_ready_and_expose_metrics() {
    let env = TestEnv::new().await;
    let settings = env.settings();

    let api = api_server::Application::build(settings.clone()).expect("api-server");
    let worker = event_worker::App::build(settings.clone()).expect("event-worker");
    let scheduler = scheduler::App::build(settings).expect("scheduler");
    let ports = [api.port(), worker.admin_port(), scheduler.admin_port()];
    let (stop_worker, stop_scheduler) = (worker.shutdown_token(), scheduler.shutdown_token());
    let api_handle = api.handle();
    let tasks = [
        tokio::spawn(api.run_until_stopped()),
        tokio::spawn(worker.run_until_stopped()),
        tokio::spawn(scheduler.run_until_stopped()),
    ];

    for port in ports {
        let (status, body) =
            wait_for_ready(&format!("http://127.0.0.1:{port}/health/ready"), Duration::from_secs(30)).await;
        assert_eq!(status, 200, "port {port}: {body}");
    }

    let api_metrics = metrics(ports[0]).await;
    for name in [
        "http_server_request_duration_seconds_bucket",
        "http_server_requests_total",
        "db_pool_connections",
        "redis_pool_connections",
        "process_resident_memory_bytes",
    ] {
        assert!(api_metrics.contains(name), "api-server /metrics lacks {name}");
    }
    for port in &ports[1..] {
        let text = metrics(*port).await;
        assert!(text.contains("db_pool_connections"), "{port}");
        assert!(text.contains("process_resident_memory_bytes"), "{port}");
    }

    // An unknown route on any binary answers in the SPEC envelope.
    let response = reqwest::get(format!("http://127.0.0.1:{}/api/nothing", ports[0])).await.expect("request");
    assert_eq!(response.status().as_u16(), 404);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["code"], "NOT_FOUND");
    assert_eq!(body["path"], "/api/nothing");

    // Metrics are labelled by route pattern, never by raw path; an unrouted path is `unmatched`.
    let validate = format!("http://127.0.0.1:{}/api/coupons/validate/NOPE-42", ports[0]);
    assert_eq!(reqwest::get(validate).await.expect("request").status().as_u16(), 401, "no user header");
    let api_metrics = metrics(ports[0]).await;
    for line in [
        r#"http_server_errors_total{route="/api/coupons/validate/{couponCode}",code="UNAUTHENTICATED"} 1"#,
        r#"http_server_errors_total{route="unmatched",code="NOT_FOUND"} 1"#,
        r#"http_server_requests_total{method="GET",route="/api/coupons/validate/{couponCode}",status="401"} 1"#,
    ] {
        assert!(api_metrics.lines().any(|l| l == line), "no {line} in\n{api_metrics}");
    }
    assert!(!api_metrics.contains("NOPE-42"), "a raw path became a label");

    api_handle.stop(true).await;
    stop_worker.cancel();
    stop_scheduler.cancel();
    for task in tasks {
        let outcome = tokio::time::timeout(Duration::from_secs(10), task).await.expect("stops in time");
        assert!(outcome.expect("task").is_ok());
    }
}
