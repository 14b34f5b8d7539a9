//! A Kafka broker of a test's own (Tansu, as in the local stack), for tests that stop the broker
//! (the shared one must stay up for the other tests), and one behind TLS, optionally requiring
//! SASL, for the connectivity tests: Tansu 0.6 accepts `--cert`/`--key` but does not use them, so
//! TLS is terminated by stunnel (Debian's `stunnel4`) in front of it, as a proxy would in production.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::process::free_port;

/// A Tansu broker on its own port with its data in its own directory.
#[derive(Debug)]
pub struct PrivateBroker {
    port: u16,
    dir: PathBuf,
    /// `host:port` the broker names in its metadata.
    advertised: String,
    /// SASL required.
    authentication: bool,
    child: Option<Child>,
}

impl PrivateBroker {
    /// Starts the broker and waits until it accepts connections.
    ///
    /// # Panics
    /// When `tansu` is not installed (`deploy/local/test.sh` installs it) or does not start.
    pub async fn start() -> Self {
        let port = free_port();
        Self::start_advertising(port, format!("127.0.0.1:{port}")).await
    }

    /// A broker on `port` that tells clients to connect to `advertised`.
    async fn start_advertising(port: u16, advertised: String) -> Self {
        let dir = std::env::temp_dir().join(format!("coupon-test-broker-{}", crate::unique_suffix()));
        std::fs::create_dir_all(&dir).expect("broker data directory");
        let mut broker = Self { port, dir, advertised, authentication: false, child: None };
        broker.resume().await;
        broker
    }

    /// `host:port` for `KAFKA_BOOTSTRAP_SERVERS`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker at once (SIGKILL), as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill the broker");
        }
    }

    /// Starts the broker again on the same port and data, and waits until it accepts connections.
    ///
    /// # Panics
    /// When it does not start within 30 s.
    pub async fn resume(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://{}", self.advertised);
        let mut command = Command::new("tansu");
        command
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &advertised])
            .args(["--storage-engine", "sqlite://tansu.db"]);
        if self.authentication {
            command.arg("--authentication");
        }
        command.current_dir(&self.dir);
        self.child =
            Some(spawn_listening(&mut command, self.port, "tansu (deploy/local/test.sh installs it)").await);
    }
}

/// A [`PrivateBroker`] reached through TLS: stunnel on its own port with the certificate of
/// [`crate::certificates`] (for `localhost`), the broker advertising that port.
#[derive(Debug)]
pub struct TlsBroker {
    broker: PrivateBroker,
    tls_port: u16,
    _stunnel: Child,
}

impl TlsBroker {
    /// Starts the broker and stunnel in front of it, with the certificates in `certificates`;
    /// with `users` (name, password), the broker knows them (SCRAM-SHA-256 and SCRAM-SHA-512) and
    /// requires SASL.
    ///
    /// # Panics
    /// When tansu or stunnel cannot be started.
    pub async fn start(certificates: &Path, users: &[(&str, &str)]) -> Self {
        let (port, tls_port) = (free_port(), free_port());
        let mut broker = PrivateBroker::start_advertising(port, format!("localhost:{tls_port}")).await;
        if !users.is_empty() {
            for (name, password) in users {
                for mechanism in ["scram256", "scram512"] {
                    let output = Command::new("tansu")
                        .args(["user", "create", "--broker", &format!("tcp://127.0.0.1:{port}")])
                        .args(["--mechanism", mechanism, name, password])
                        .output()
                        .await
                        .expect("tansu user create runs");
                    assert!(
                        output.status.success(),
                        "tansu user create: {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
            }
            broker.kill().await;
            broker.authentication = true;
            broker.resume().await;
        }
        let config = broker.dir.join("stunnel.conf");
        let path = |name: &str| certificates.join(name).to_string_lossy().into_owned();
        std::fs::write(
            &config,
            format!(
                "foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{tls_port}\nconnect = 127.0.0.1:{port}\ncert = {}\nkey = {}\n",
                path("server.crt"),
                path("server.key"),
            ),
        )
        .expect("stunnel configuration");
        let program = if Path::new("/usr/bin/stunnel4").exists() { "stunnel4" } else { "stunnel" };
        let mut command = Command::new(program);
        command.arg(&config);
        let stunnel =
            spawn_listening(&mut command, tls_port, "stunnel (deploy/local/test.sh installs stunnel4)").await;
        Self { broker, tls_port, _stunnel: stunnel }
    }

    /// The TLS port, for `KAFKA_BOOTSTRAP_SERVERS` as `localhost:{port}` (the certificate's name).
    pub fn tls_port(&self) -> u16 {
        self.tls_port
    }

    /// The broker's own plain-text `host:port`, behind stunnel.
    pub fn plain_address(&self) -> String {
        self.broker.address()
    }
}

/// Starts `command` quietly (killed when dropped) and waits until something accepts connections
/// on `port`.
///
/// # Panics
/// When `what` cannot be started or does not listen within 30 s.
async fn spawn_listening(command: &mut Command, port: u16, what: &str) -> Child {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "{what} did not listen on {port} within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
