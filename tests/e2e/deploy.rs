//! The deployment pack in `deploy/` checked against the code it deploys: the image, the compose
//! file and the Kubernetes manifests (commands, probes, ports, setting names), and the Grafana
//! dashboard and alert rules (every metric they read is exported by the running binaries).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use coupon_e2e::*;
use coupon_runtime::settings::KEYS;
use coupon_testkit::TestEnv;
use serde::Deserialize;
use serde_json::json;
use serde_norway::Value;

/// The three binaries: command, admin-port setting, default port.
const BINARIES: [(&str, &str, u64); 3] = [
    ("api-server", "HTTP_PORT", 8080),
    ("event-worker", "WORKER_ADMIN_PORT", 9101),
    ("scheduler", "SCHEDULER_ADMIN_PORT", 9102),
];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root").join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every YAML document of a file, with `<<` merge keys applied.
fn documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            let mut value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            value.apply_merge().expect("merge keys");
            value
        })
        .collect()
}

fn str_of<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    walk(value, path).as_str().unwrap_or_else(|| panic!("{path:?} is not a string in {value:?}"))
}

fn walk<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(value, |v, key| match key.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[*key],
    })
}

fn strings(value: &Value) -> Vec<&str> {
    value.as_sequence().map(|s| s.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

fn known_setting(name: &str) -> bool {
    KEYS.iter().any(|k| k.name == name)
}

fn default_of(name: &str) -> &'static str {
    KEYS.iter().find(|k| k.name == name).map(|k| k.default).expect("a known setting")
}

/// The settings SPEC §8 names; a deployment must give every one of them.
const SPEC_SETTINGS: [&str; 9] = [
    "DATABASE_HOST",
    "DATABASE_PORT",
    "DATABASE_NAME",
    "DATABASE_USER",
    "DATABASE_PASSWORD",
    "REDIS_HOST",
    "REDIS_PORT",
    "KAFKA_BOOTSTRAP_SERVERS",
    "COUPON_RESERVATION_TIMEOUT",
];

#[test]
fn the_image_builds_the_three_binaries_and_runs_them_as_a_non_root_user() {
    let dockerfile = read(&deploy_dir().join("Dockerfile"));
    for (binary, _, port) in BINARIES {
        assert!(dockerfile.contains(&format!("-p {binary}")), "the image builds {binary}");
        assert!(dockerfile.contains(&format!("target/release/{binary}")), "the image ships {binary}");
        assert!(dockerfile.contains(&port.to_string()), "the image exposes {port}");
    }
    assert!(dockerfile.contains("cargo chef cook"), "dependencies build in their own cached layer");
    assert!(dockerfile.contains("COPY deploy/migrate.sh /usr/local/bin/migrate"));
    let user = dockerfile.lines().rfind(|l| l.starts_with("USER ")).expect("a USER line");
    assert!(!user.contains("root") && !user.ends_with(" 0"), "{user}");
    let migrate = read(&deploy_dir().join("migrate.sh"));
    assert!(migrate.contains("exec api-server migrate"), "{migrate}");
}

#[test]
fn the_compose_redis_cluster_overlay_points_the_api_server_at_its_six_nodes() {
    let overlay = documents(&deploy_dir().join("compose.redis-cluster.yaml")).remove(0);
    let services = &overlay["services"];
    let nodes = str_of(services, &["api-server", "environment", "REDIS_CLUSTER_NODES"]);
    let names: Vec<&str> = nodes.split(',').map(|n| n.split(':').next().unwrap_or_default()).collect();
    assert_eq!(names.len(), 6, "3 masters and 3 replicas: {nodes}");
    for name in names {
        assert!(str_of(services, &[name, "image"]).starts_with("redis:7"), "{name} is a Redis 7 service");
        let command = services[name]["command"].as_sequence().expect("command");
        let flags: Vec<String> = command
            .iter()
            .flat_map(|v| v.as_sequence().cloned().unwrap_or_else(|| vec![v.clone()]))
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        assert!(flags.windows(2).any(|w| w == ["--cluster-enabled", "yes"]), "{name}: {flags:?}");
        assert!(flags.windows(2).any(|w| w[0] == "--cluster-announce-hostname" && w[1] == name), "{name}");
    }
    assert_eq!(
        str_of(services, &["api-server", "depends_on", "redis-cluster", "condition"]),
        "service_completed_successfully"
    );
    assert!(str_of(services, &["redis-cluster", "command", "0"]).contains("--cluster-replicas 1"));
}

#[test]
fn compose_runs_the_whole_stack_with_health_checks_and_the_spec_settings() {
    let compose = documents(&deploy_dir().join("compose.yaml")).remove(0);
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(Value::as_str).collect();
    let expected = ["api-server", "event-worker", "kafka", "migrate", "postgres", "redis", "scheduler"];
    assert_eq!(names, expected.into_iter().collect());
    assert!(str_of(&compose, &["services", "postgres", "image"]).starts_with("postgres:15"));
    assert!(str_of(&compose, &["services", "redis", "image"]).starts_with("redis:7"));
    assert!(str_of(&compose, &["services", "kafka", "image"]).starts_with("apache/kafka:"));
    let roles = str_of(&compose, &["services", "kafka", "environment", "KAFKA_PROCESS_ROLES"]);
    assert!(roles.contains("controller") && roles.contains("broker"), "Kafka runs in KRaft mode: {roles}");
    for name in ["postgres", "redis", "kafka"] {
        assert!(!compose["services"][name]["healthcheck"]["test"].is_null(), "{name} has a health check");
    }

    let migrate = &compose["services"]["migrate"];
    assert_eq!(strings(&migrate["command"]), ["migrate"]);
    assert_eq!(str_of(migrate, &["depends_on", "postgres", "condition"]), "service_healthy");
    for (binary, port_key, default_port) in BINARIES {
        let service = &compose["services"][binary];
        assert_eq!(strings(&service["command"]), [binary]);
        assert_eq!(
            str_of(service, &["depends_on", "migrate", "condition"]),
            "service_completed_successfully"
        );
        let env = service["environment"].as_mapping().expect("environment");
        for key in env.keys().filter_map(Value::as_str) {
            assert!(known_setting(key), "{binary} sets {key}, which the service does not read");
        }
        for key in SPEC_SETTINGS {
            assert!(!service["environment"][key].is_null(), "{binary} lacks {key}");
        }
        let port: u64 = str_of(service, &["environment", port_key]).parse().expect("port");
        assert_eq!(port, default_port);
        let check = strings(&service["healthcheck"]["test"]).join(" ");
        assert!(check.contains(&format!("127.0.0.1:{port}/health/ready")), "{binary}: {check}");
    }
}

/// The Kubernetes objects of `deploy/k8s`, by kind and name.
fn manifests() -> HashMap<(String, String), Value> {
    let dir = deploy_dir().join("k8s");
    let kustomization = documents(&dir.join("kustomization.yaml")).remove(0);
    let listed: BTreeSet<&str> = strings(&kustomization["resources"]).into_iter().collect();
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("deploy/k8s")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present.iter().map(String::as_str).collect(), "kustomization lists every manifest");
    let mut objects = HashMap::new();
    for file in &present {
        for doc in documents(&dir.join(file)) {
            let key = (str_of(&doc, &["kind"]).to_owned(), str_of(&doc, &["metadata", "name"]).to_owned());
            assert!(objects.insert(key.clone(), doc).is_none(), "{key:?} twice");
        }
    }
    objects
}

fn object<'a>(objects: &'a HashMap<(String, String), Value>, kind: &str, name: &str) -> &'a Value {
    objects.get(&(kind.to_owned(), name.to_owned())).unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn seconds(value: &Value) -> u64 {
    value.as_u64().or_else(|| value.as_str()?.parse().ok()).expect("a number of seconds")
}

#[test]
fn kubernetes_manifests_run_each_binary_with_its_probes_ports_and_settings() {
    let objects = manifests();
    let config = object(&objects, "ConfigMap", "coupon-config");
    let secret = object(&objects, "Secret", "coupon-secrets");
    let mut provided = BTreeSet::new();
    for data in [&config["data"], &secret["stringData"]] {
        for key in data.as_mapping().expect("data").keys().filter_map(Value::as_str) {
            assert!(known_setting(key), "{key} is not a setting the service reads");
            provided.insert(key.to_owned());
        }
    }
    for key in SPEC_SETTINGS {
        assert!(provided.contains(key), "the ConfigMap or Secret lacks {key}");
    }
    let drain = seconds(&config["data"]["SHUTDOWN_TIMEOUT"]);

    for (binary, port_key, default_port) in BINARIES {
        let deployment = object(&objects, "Deployment", binary);
        let labels = &deployment["spec"]["selector"]["matchLabels"];
        assert_eq!(
            &deployment["spec"]["template"]["metadata"]["labels"], labels,
            "{binary} selects its pods"
        );
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], Value::Bool(true), "{binary}");
        let container = &pod["containers"][0];
        assert_eq!(str_of(container, &["image"]), "coupon-service");
        assert_eq!(strings(&container["args"]), [binary], "{binary} keeps the image's entrypoint (tini)");
        let sources: Vec<&str> = container["envFrom"]
            .as_sequence()
            .expect("envFrom")
            .iter()
            .filter_map(|s| s["configMapRef"]["name"].as_str().or_else(|| s["secretRef"]["name"].as_str()))
            .collect();
        assert_eq!(sources, ["coupon-config", "coupon-secrets"], "{binary}");
        let mut port = default_port;
        for var in container["env"].as_sequence().into_iter().flatten() {
            let name = str_of(var, &["name"]);
            assert!(known_setting(name), "{binary} sets {name}, which the service does not read");
            if name == port_key {
                port = str_of(var, &["value"]).parse().expect("port");
            }
        }
        assert_eq!(default_of(port_key), default_port.to_string());
        let port_name = str_of(container, &["ports", "0", "name"]);
        assert_eq!(container["ports"][0]["containerPort"].as_u64(), Some(port), "{binary}");
        for (probe, path) in [("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")] {
            assert_eq!(str_of(container, &[probe, "httpGet", "path"]), path, "{binary} {probe}");
            assert_eq!(str_of(container, &[probe, "httpGet", "port"]), port_name, "{binary} {probe}");
        }
        for (kind, name) in [("requests", "cpu"), ("requests", "memory"), ("limits", "memory")] {
            assert!(!container["resources"][kind][name].is_null(), "{binary} lacks resources.{kind}.{name}");
        }
        let pause = strings(&container["lifecycle"]["preStop"]["exec"]["command"])
            .last()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let grace = seconds(&pod["terminationGracePeriodSeconds"]);
        assert!(
            grace > pause + drain,
            "{binary}: grace {grace} s must cover a {pause} s pause and a {drain} s drain"
        );
        let budget = object(&objects, "PodDisruptionBudget", binary);
        assert_eq!(&budget["spec"]["selector"]["matchLabels"], labels, "{binary}'s PDB");
    }

    let api = object(&objects, "Deployment", "api-server");
    assert!(!api["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"].is_null());
    let service = object(&objects, "Service", "api-server");
    assert_eq!(&service["spec"]["selector"], &api["spec"]["selector"]["matchLabels"]);
    assert_eq!(str_of(service, &["spec", "ports", "0", "targetPort"]), "http");
    let hpa = object(&objects, "HorizontalPodAutoscaler", "api-server");
    assert_eq!(str_of(hpa, &["spec", "scaleTargetRef", "name"]), "api-server");
    let scaled_on: Vec<&str> = hpa["spec"]["metrics"]
        .as_sequence()
        .expect("metrics")
        .iter()
        .map(|m| {
            m["resource"]["name"].as_str().or_else(|| m["pods"]["metric"]["name"].as_str()).unwrap_or("")
        })
        .collect();
    assert_eq!(scaled_on, ["cpu", "http_server_requests_per_second"]);

    let partitions = seconds(&config["data"]["KAFKA_TOPIC_PARTITIONS"]);
    let workers =
        object(&objects, "Deployment", "event-worker")["spec"]["replicas"].as_u64().expect("replicas");
    assert!(workers <= partitions, "{workers} event-workers for {partitions} partitions");
    assert_eq!(object(&objects, "Deployment", "scheduler")["spec"]["replicas"].as_u64(), Some(2));

    let job = object(&objects, "Job", "coupon-migrate");
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(strings(&container["args"]), ["migrate"]);
    assert_eq!(str_of(&job["spec"]["template"]["spec"], &["restartPolicy"]), "Never");
}

/// Metric names a PromQL expression reads (the service's own prefixes; histogram series by their
/// exported `_bucket` name).
fn metric_names(expr: &str) -> Vec<String> {
    const PREFIXES: [&str; 5] = ["coupon_", "http_server_", "db_pool_", "redis_pool_", "process_"];
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find(|c: char| c.is_ascii_lowercase()) {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let word = &tail[..end];
        let is_label = tail[end..].trim_start().starts_with(['=', '!']) || tail[end..].starts_with("}}");
        if PREFIXES.iter().any(|p| word.starts_with(p)) && !is_label {
            names.push(word.to_owned());
        }
        rest = &tail[end..];
    }
    names
}

fn observability_metrics() -> BTreeSet<String> {
    let dir = deploy_dir().join("observability");
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(&dir.join("grafana-dashboard.json"))).expect("dashboard JSON");
    let mut names = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has a query", panel["title"]);
        for target in targets {
            names.extend(metric_names(target["expr"].as_str().expect("expr")));
        }
    }
    let rules = documents(&dir.join("alerts.yaml")).remove(0);
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            alerts.insert(str_of(rule, &["alert"]).to_owned());
            names.extend(metric_names(str_of(rule, &["expr"])));
        }
    }
    let runbook = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/OPERATIONS.md"));
    for alert in &alerts {
        assert!(runbook.contains(&format!("### {alert}")), "docs/OPERATIONS.md explains {alert}");
    }
    names
}

/// Every metric of the dashboard and the alert rules, scraped from the three binaries after the
/// flows that record them: issuing (and a sold-out answer), a reservation confirmed by a
/// `payment.completed` record, a poison record sent to the DLQ, the outbox relay, a job run, and
/// the readiness checks Kubernetes makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_read_is_exported() {
    let wanted = observability_metrics();
    assert!(wanted.len() > 15, "{wanted:?}");

    let env = TestEnv::new().await;
    let settings = env.settings();
    let api = api_server::Application::build(settings.clone()).expect("api-server");
    let base = format!("http://127.0.0.1:{}", api.port());
    let scheduler = scheduler::App::build(settings.clone()).expect("scheduler");
    let ports = [api.port(), scheduler.admin_port()];
    let stop_scheduler = scheduler.shutdown_token();
    tokio::spawn(api.run_until_stopped());
    let scheduler = tokio::spawn(scheduler.run_until_stopped());
    let worker = start_worker(&env);
    let client = client();
    let topics = settings.kafka.topics;

    let policy = create_policy(&client, &base, policy_body("FIRST_COME", Some(1), 1)).await;
    let id = coupon(&client, &base, policy, 1).await;
    let (status, _) = download(&client, &base, 2, json!({"couponPolicyId": policy, "userId": 2})).await;
    assert_eq!(status, 410, "the second download finds the policy sold out");
    reserve(&client, &base, 1, id, "R1").await;
    wait_for_ready_worker(&env).await;
    produce(&env, &topics.payment_completed, &id.to_string(), &payment_completed("m1", "R1", id, 1)).await;
    produce(&env, &topics.payment_completed, &id.to_string(), "{not json").await;
    let used = format!("SELECT count(*) AS n FROM coupon_issues WHERE id = {id} AND status = 'USED'");
    assert_eq!(count_until(&env, &used, 1, Duration::from_secs(20)).await, 1);
    let published = "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL";
    assert_eq!(count_until(&env, published, 0, Duration::from_secs(20)).await, 0);
    // 409: the scheduler started the same job at this instant; its run records the same metrics.
    let (status, body) =
        admin_post(&client, &format!("{base}/api/admin/jobs/reservation-timeout/run"), json!({})).await;
    assert!(status == 200 || status == 409, "{body}");

    for port in ports {
        let ready = reqwest::get(format!("http://127.0.0.1:{port}/health/ready")).await.expect("ready");
        assert_eq!(ready.status().as_u16(), 200);
    }

    // All three run in this process and share one recorder; each serves all of it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let missing = loop {
        let mut exported = BTreeSet::new();
        for port in ports {
            let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
                .await
                .expect("scrape")
                .text()
                .await
                .expect("text");
            exported.extend(
                text.lines()
                    .filter(|l| !l.starts_with('#'))
                    .filter_map(|l| l.split(['{', ' ']).next())
                    .map(str::to_owned),
            );
        }
        let missing: Vec<&String> = wanted.iter().filter(|name| !exported.contains(*name)).collect();
        if missing.is_empty() || tokio::time::Instant::now() >= deadline {
            break missing.into_iter().cloned().collect::<Vec<_>>();
        }
        // The relay's backlog gauges are sampled every few seconds.
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(missing.is_empty(), "read by the dashboard or alerts but not exported: {missing:?}");

    worker.stop().await;
    stop_scheduler.cancel();
    assert!(scheduler.await.expect("scheduler task").is_ok());
}
