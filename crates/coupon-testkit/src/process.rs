//! Running the real binaries as processes, the way an operator or Kubernetes does: with an
//! environment, waiting for readiness, and stopping them with SIGTERM.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// A port that was free a moment ago, released for a child to bind, and below the kernel's
/// ephemeral range.
///
/// Tests kill servers on these ports and start them again on the same port. A port from the
/// ephemeral range (what binding port 0 gives) can be handed to another test process's port-0
/// bind in that gap, and the "dead" server answers again (seen in a full run: a killed Redis
/// answered 49 of 50 calls). Below the range only another `free_port` can pick it, at random among
/// thousands.
pub fn free_port() -> u16 {
    let (low, _) = ephemeral_range();
    let first = 10_000u16;
    let span = u128::from(low.saturating_sub(first).max(1));
    for _ in 0..1_000 {
        let offset = u16::try_from(uuid::Uuid::new_v4().as_u128() % span).unwrap_or(0);
        let port = first + offset;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {first} and {low}");
}

/// The kernel's ephemeral port range (Linux's default when it cannot be read).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut bounds = text.split_whitespace().map(str::parse::<u16>);
            Some((bounds.next()?.ok()?, bounds.next()?.ok()?))
        })
        .unwrap_or((32_768, 60_999))
}

/// A port on which nothing listens: connecting to it is refused at once (a dependency that is down).
pub fn closed_port() -> u16 {
    free_port()
}

/// A spawned binary.
#[derive(Debug)]
pub struct Running {
    child: Child,
    name: String,
}

impl Running {
    /// Starts `program` with exactly `env` as its environment; its output goes to the test's.
    ///
    /// # Panics
    /// When the program cannot be started.
    pub fn spawn(program: &str, args: &[&str], env: &HashMap<String, String>) -> Self {
        let child = Command::new(program)
            .args(args)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        match child {
            Ok(child) => Self { child, name: program.to_owned() },
            Err(e) => panic!("cannot start {program}: {e}"),
        }
    }

    /// Sends SIGTERM, as Kubernetes does before stopping a pod.
    ///
    /// # Panics
    /// When the process is already gone or `kill` fails.
    pub async fn terminate(&self) {
        let Some(pid) = self.child.id() else { panic!("{} already exited", self.name) };
        let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        assert!(status.is_ok_and(|s| s.success()), "kill -TERM {pid} failed");
    }

    /// Kills the process at once (SIGKILL), as a crash or `kill -9` would, and reaps it.
    ///
    /// # Panics
    /// When the process is already gone.
    pub async fn kill(&mut self) {
        self.child.kill().await.unwrap_or_else(|e| panic!("kill -9 {}: {e}", self.name));
    }

    /// Waits for the process to exit.
    ///
    /// # Panics
    /// When it is still running after `limit`.
    pub async fn exit_status(&mut self, limit: Duration) -> ExitStatus {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => panic!("waiting for {}: {e}", self.name),
            Err(_) => panic!("{} did not exit within {limit:?}", self.name),
        }
    }
}

/// Polls `GET url` until it answers 200 or `limit` passes; returns the last status and body.
pub async fn wait_for_ready(url: &str, limit: Duration) -> (u16, serde_json::Value) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(response) = client.get(url).timeout(Duration::from_secs(2)).send().await {
            let status = response.status().as_u16();
            let body = response.json().await.unwrap_or(serde_json::Value::Null);
            if status == 200 || started.elapsed() > limit {
                return (status, body);
            }
        } else if started.elapsed() > limit {
            return (0, serde_json::Value::Null);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts `program` with `env`, waits until `GET http://127.0.0.1:{port}/health/ready` answers
/// 200, sends SIGTERM and asserts a clean exit (status 0) within the drain time.
///
/// # Panics
/// When any step fails: that is the test's failure.
pub async fn assert_starts_and_stops(program: &str, env: &HashMap<String, String>, port: u16) {
    let mut running = Running::spawn(program, &[], env);
    let url = format!("http://127.0.0.1:{port}/health/ready");
    let (status, body) = wait_for_ready(&url, Duration::from_secs(30)).await;
    assert_eq!(status, 200, "{program} not ready: {body}");
    running.terminate().await;
    let exit = running.exit_status(Duration::from_secs(15)).await;
    assert!(exit.success(), "{program} exited with {exit} after SIGTERM");
}

/// Runs `program` with `env` and asserts that it refuses to start, naming `key` on stderr.
///
/// # Panics
/// When it starts, or its error does not name the key.
pub async fn assert_refuses_setting(program: &str, env: &HashMap<String, String>, key: &str) {
    let output = Command::new(program).env_clear().envs(env).stdin(Stdio::null()).output();
    let output = match tokio::time::timeout(Duration::from_secs(30), output).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("cannot run {program}: {e}"),
        Err(_) => panic!("{program} started instead of refusing {key}"),
    };
    assert!(!output.status.success(), "{program} accepted the bad {key}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(key), "{program}'s error does not name {key}: {stderr}");
}

/// `program --version` prints `{name} {version}` and `--help` its usage and `words`, both without
/// any configuration (they exit before reading it).
pub fn assert_help_and_version(program: &str, name: &str, version: &str, words: &[&str]) {
    let run = |arg: &str| {
        let out = std::process::Command::new(program).arg(arg).env_clear().output().expect("the binary runs");
        assert!(out.status.success(), "{program} {arg}: {out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    assert_eq!(run("--version").trim(), format!("{name} {version}"));
    let help = run("--help");
    assert!(help.contains(&format!("Usage: {name}")), "{help}");
    for word in words {
        assert!(help.contains(word), "{name} --help names {word}: {help}");
    }
}
