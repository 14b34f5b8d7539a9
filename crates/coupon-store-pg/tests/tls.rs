//! PostgreSQL over TLS (`DATABASE_SSL_MODE`, SPEC §11.7) against a real server: a private
//! PostgreSQL cluster this test starts with `ssl = on` and a certificate it generates (openssl),
//! for `localhost` only, signed by a CA of its own, with password authentication on TCP.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use coupon_store_pg::migrate;
use coupon_store_pg::pool::{PgConfig, PgPool};
use coupon_store_pg::tls::{PgTls, SslMode};
use coupon_testkit::certificates;
use coupon_testkit::process::free_port;
use diesel::QueryableByName;
use diesel::sql_types::Bool;
use diesel_async::RunQueryDsl;
use secrecy::SecretString;

const PASSWORD: &str = "tls-test-password";

/// A PostgreSQL cluster of the test's own, stopped when dropped.
struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

/// Runs `program` (as the postgres user when the test runs as root: PostgreSQL refuses root).
fn run(as_postgres: bool, program: &Path, args: &[&str]) {
    let mut command = if as_postgres && is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let output = command.args(args).output().expect("start the command");
    assert!(
        output.status.success(),
        "{} {args:?}: {}",
        program.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PrivatePostgres {
    fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries in /usr/lib/postgresql")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").is_file())
            .max()
            .expect("an initdb");
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("coupon-tls-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        certificates::generate(&dir);
        std::fs::write(dir.join("password"), PASSWORD).expect("password file");
        if is_root() {
            run(false, Path::new("chown"), &["-R", "postgres", dir.to_str().expect("utf-8 path")]);
        }
        run(false, Path::new("chmod"), &["0600", dir.join("server.key").to_str().expect("utf-8 path")]);
        let data = dir.join("data");
        run(
            true,
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--pwfile",
                dir.join("password").to_str().expect("utf-8 path"),
            ],
        );
        let server = Self { dir, port, bin };
        server.pg_ctl("start", true);
        server
    }

    fn pg_ctl(&self, action: &str, ssl: bool) {
        let dir = self.dir.to_str().expect("utf-8 path");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={dir} -c ssl={} \
             -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key",
            self.port,
            if ssl { "on" } else { "off" }
        );
        let log = format!("{dir}/server.log");
        run(
            true,
            &self.bin.join("pg_ctl"),
            &["-D", &format!("{dir}/data"), "-l", &log, "-w", "-t", "60", "-o", &options, action],
        );
    }

    fn pool(&self, host: &str, password: &str, mode: SslMode, root: &str) -> PgPool {
        PgPool::new(&PgConfig {
            connection_string: self.connection_string(host, password),
            max_size: 2,
            timeout: Duration::from_secs(5),
            tls: PgTls { mode, root_cert: Some(self.dir.join(root)) },
        })
        .expect("pool")
    }

    fn connection_string(&self, host: &str, password: &str) -> SecretString {
        SecretString::from(format!(
            "host={host} port={} user=postgres password={password} dbname=postgres",
            self.port
        ))
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = Command::new(if is_root() { "runuser" } else { "true" })
            .args(if is_root() { vec!["-u", "postgres", "--"] } else { vec![] })
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap_or_default(), "stop", "-m", "immediate"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(QueryableByName)]
struct Encrypted {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

/// Whether the pool's connection is encrypted, as the server sees it.
async fn encrypted(pool: &PgPool) -> bool {
    let mut conn = pool.get().await.expect("a connection");
    let row: Encrypted = diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result(&mut conn)
        .await
        .expect("pg_stat_ssl");
    row.ssl
}

/// The readiness reason the pool's probe gives, or `None` when it passes.
async fn reason(pool: &PgPool) -> Option<&'static str> {
    pool.probe().check().await.err().map(|e| e.reason)
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_full_checks_the_chain_and_the_host_and_require_refuses_plain_text() {
    let server = PrivatePostgres::start();

    let trusted = server.pool("localhost", PASSWORD, SslMode::VerifyFull, "ca.crt");
    assert_eq!(reason(&trusted).await, None);
    assert!(encrypted(&trusted).await, "verify-full connects over TLS");
    let tls = PgTls { mode: SslMode::VerifyFull, root_cert: Some(server.dir.join("ca.crt")) };
    migrate::pending(&server.connection_string("localhost", PASSWORD), &tls)
        .await
        .expect("migrations connect over TLS");

    let wrong_host = server.pool("127.0.0.1", PASSWORD, SslMode::VerifyFull, "ca.crt");
    assert_eq!(reason(&wrong_host).await, Some("TLS_HOST_NAME"), "the certificate is for localhost only");
    let untrusted = server.pool("localhost", PASSWORD, SslMode::VerifyFull, "other-ca.crt");
    assert_eq!(reason(&untrusted).await, Some("TLS_CERTIFICATE"));
    let wrong_password = server.pool("localhost", "not-the-password", SslMode::VerifyFull, "ca.crt");
    assert_eq!(reason(&wrong_password).await, Some("AUTH_FAILED"));

    let require = server.pool("127.0.0.1", PASSWORD, SslMode::Require, "other-ca.crt");
    assert_eq!(reason(&require).await, None, "require does not check the certificate");
    assert!(encrypted(&require).await);
    let plain = server.pool("127.0.0.1", PASSWORD, SslMode::Disable, "ca.crt");
    assert!(!encrypted(&plain).await, "disable speaks plain text");

    server.pg_ctl("restart", false);
    let require = server.pool("127.0.0.1", PASSWORD, SslMode::Require, "ca.crt");
    assert_eq!(reason(&require).await, Some("TLS_UNAVAILABLE"), "require refuses a server without TLS");
    let plain = server.pool("127.0.0.1", PASSWORD, SslMode::Disable, "ca.crt");
    assert_eq!(reason(&plain).await, None);
}
