//! Redis over TLS with an ACL user (`REDIS_TLS`, `REDIS_TLS_CA`, `REDIS_USERNAME`,
//! `REDIS_PASSWORD`; SPEC §11.7) against a real server: a `redis-server` this test starts with only
//! a TLS port, a certificate for `localhost` signed by a CA of the test's own (openssl), and the
//! default user switched off.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use coupon_lock_redis::pool::{RedisConfig, RedisPool, RedisTarget, RedisTls};
use coupon_testkit::certificates;
use coupon_testkit::process::{Running, free_port};
use secrecy::SecretString;

const PASSWORD: &str = "tls-s3cret-pass";

/// A Redis listening on `port` with TLS only (or in plain text only when `tls` is false), whose
/// one user is `coupon`.
fn start_redis(dir: &Path, port: u16, tls: bool) -> Running {
    let env: HashMap<String, String> = std::env::vars().filter(|(k, _)| k == "PATH").collect();
    let (port, path) = (port.to_string(), |name: &str| dir.join(name).to_string_lossy().into_owned());
    let (cert, key, ca) = (path("server.crt"), path("server.key"), path("ca.crt"));
    let mut args = vec!["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"];
    if tls {
        args.extend(["--port", "0", "--tls-port", &port, "--tls-cert-file", &cert, "--tls-key-file", &key]);
        args.extend(["--tls-ca-cert-file", &ca, "--tls-auth-clients", "no"]);
    } else {
        args.extend(["--port", &port]);
    }
    let acl = format!(">{PASSWORD}");
    args.extend(["--user", "default", "off", "--user", "coupon", "on", &acl, "~*", "&*", "+@all"]);
    Running::spawn("redis-server", &args, &env)
}

fn pool(host: &str, port: u16, tls: Option<&Path>, password: &str) -> RedisPool {
    RedisPool::new(&RedisConfig {
        target: RedisTarget::Node(format!("{host}:{port}")),
        tls: tls.map(|ca| RedisTls { ca_file: Some(ca.to_path_buf()) }),
        username: Some("coupon".to_owned()),
        password: Some(SecretString::from(password.to_owned())),
        max_size: 2,
        timeout: Duration::from_secs(1),
        key_prefix: String::new(),
    })
    .expect("pool")
}

/// The readiness reason of `pool`'s probe; `None` when ready.
async fn reason(pool: &RedisPool) -> Option<&'static str> {
    let refused = pool.probe().check().await.err()?;
    assert!(!refused.to_string().contains(PASSWORD), "the password stays out of the error: {refused}");
    Some(refused.reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_checks_the_chain_and_the_host_and_names_each_refusal() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("coupon-redis-tls-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    certificates::generate(&dir);
    let (tls_port, plain_port) = (free_port(), free_port());
    let _tls = start_redis(&dir, tls_port, true);
    let _plain = start_redis(&dir, plain_port, false);
    let (ca, other_ca) = (dir.join("ca.crt"), dir.join("other-ca.crt"));

    let trusted = pool("localhost", tls_port, Some(&ca), PASSWORD);
    let started = Instant::now();
    while let Some(reason) = reason(&trusted).await {
        assert!(started.elapsed() < Duration::from_secs(10), "TLS Redis not ready after 10 s: {reason}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut set = redis::cmd("SET");
    set.arg("k").arg("over tls");
    let _: String = trusted.query(&set).await.expect("SET over TLS");
    let value: Option<String> = trusted.query(redis::cmd("GET").arg("k")).await.expect("GET over TLS");
    assert_eq!(value.as_deref(), Some("over tls"), "the server has no plain-text port: this went over TLS");

    let by_address = pool("127.0.0.1", tls_port, Some(&ca), PASSWORD);
    assert_eq!(reason(&by_address).await, Some("TLS_HOST_NAME"), "the certificate names localhost only");
    let untrusted = pool("localhost", tls_port, Some(&other_ca), PASSWORD);
    assert_eq!(reason(&untrusted).await, Some("TLS_CERTIFICATE"));
    let wrong_password = pool("localhost", tls_port, Some(&ca), "not-the-password");
    assert_eq!(reason(&wrong_password).await, Some("AUTH_FAILED"));
    let plain_server = pool("localhost", plain_port, Some(&ca), PASSWORD);
    // A plain-text Redis waits for the end of a line that a TLS hello never sends: the handshake
    // times out, and nothing falls back to plain text.
    assert_eq!(reason(&plain_server).await, Some("TIMEOUT"), "a server without TLS");
    let plain_client = pool("localhost", tls_port, None, PASSWORD);
    assert_eq!(reason(&plain_client).await, Some("UNREACHABLE"), "plain text to a TLS port");

    let missing = RedisPool::new(&RedisConfig {
        tls: Some(RedisTls { ca_file: Some(dir.join("missing.crt")) }),
        target: RedisTarget::Node(format!("localhost:{tls_port}")),
        username: None,
        password: None,
        max_size: 1,
        timeout: Duration::from_secs(1),
        key_prefix: String::new(),
    })
    .expect_err("an unreadable REDIS_TLS_CA is refused when the pool is built");
    assert!(missing.to_string().contains("REDIS_TLS_CA"), "{missing}");
    std::fs::remove_dir_all(&dir).ok();
}
