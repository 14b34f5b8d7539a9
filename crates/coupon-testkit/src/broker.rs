//! A Kafka broker of a test's own (Tansu, as in the local stack), for tests that stop the broker:
//! the shared one must stay up for the other tests.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::process::free_port;

/// A Tansu broker on its own port with its data in its own directory.
#[derive(Debug)]
pub struct PrivateBroker {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateBroker {
    /// Starts the broker and waits until it accepts connections.
    ///
    /// # Panics
    /// When `tansu` is not installed (`deploy/local/test.sh` installs it) or does not start.
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("coupon-test-broker-{}", crate::unique_suffix()));
        std::fs::create_dir_all(&dir).expect("broker data directory");
        let mut broker = Self { port: free_port(), dir, child: None };
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
        let child = Command::new("tansu")
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tansu (deploy/local/test.sh installs it): {e}"));
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "the test broker did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
