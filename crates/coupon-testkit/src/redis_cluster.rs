//! A Redis Cluster of the test's own (3 masters, 3 replicas on free ports), started by
//! `deploy/local/redis-cluster.sh`, the script the local stack uses, and stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::free_port;

/// A running cluster; its nodes stop when it is dropped.
#[derive(Debug)]
pub struct RedisCluster {
    dir: PathBuf,
    ports: Vec<u16>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/redis-cluster.sh")
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Twelve distinct free ports: six nodes and their cluster buses.
fn twelve_ports() -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::with_capacity(12);
    while ports.len() < 12 {
        let port = free_port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// Starts attempted before giving up on ports taken by someone else.
const ATTEMPTS: usize = 3;

impl RedisCluster {
    /// Starts the six nodes and waits until the cluster serves every slot.
    ///
    /// A free port is only free until someone binds it, and Redis cannot be handed a bound
    /// socket: another test's server may take one of the twelve ports between their choice and
    /// the node's start (seen in a full run). A node that finds its port taken aborts; then the
    /// attempt's nodes are stopped and the cluster starts again on other ports.
    ///
    /// # Panics
    /// When the script fails for any other reason, or ports were taken on every attempt.
    pub fn start() -> Self {
        let mut failures = Vec::new();
        for _ in 0..ATTEMPTS {
            let ports = twelve_ports();
            let (nodes, buses) = ports.split_at(6);
            let dir = std::env::temp_dir().join(format!(
                "coupon-redis-cluster-{}-{}",
                std::process::id(),
                nodes[0]
            ));
            let specs: Vec<String> =
                nodes.iter().zip(buses).map(|(port, bus)| format!("{port}/{bus}")).collect();
            // A failover within seconds of a master's death; long enough that a node starved of CPU
            // by a parallel test run is not replaced while alive.
            let output = Command::new(script())
                .env("REDIS_CLUSTER_NODE_TIMEOUT", "2000")
                .arg("start")
                .arg(&dir)
                .args(&specs)
                .output()
                .expect("deploy/local/redis-cluster.sh runs");
            let cluster = Self { dir, ports: nodes.to_vec() };
            if output.status.success() {
                return cluster;
            }
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(said.contains("Address already in use"), "redis-cluster.sh start: {said}");
            failures.push(said);
        }
        panic!("redis-cluster.sh start: ports taken on every attempt: {failures:?}");
    }

    /// `REDIS_CLUSTER_NODES` for this cluster.
    pub fn nodes(&self) -> String {
        self.ports.iter().map(|port| format!("127.0.0.1:{port}")).collect::<Vec<_>>().join(",")
    }

    /// The port of the master that serves `key` now.
    ///
    /// # Panics
    /// When no live master owns the key's slot.
    pub fn master_of(&self, key: &str) -> u16 {
        let slot: u16 =
            redis_cli(self.ports[0], &["CLUSTER", "KEYSLOT", key]).trim().parse().expect("a slot");
        let nodes =
            self.ports.iter().map(|port| redis_cli(*port, &["CLUSTER", "NODES"])).find(|n| !n.is_empty());
        for line in nodes.expect("a live node").lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (low, high) = range.split_once('-').unwrap_or((range, range));
                matches!((low.parse::<u16>(), high.parse::<u16>()), (Ok(l), Ok(h)) if (l..=h).contains(&slot))
            });
            if serves {
                let address = fields[1].split('@').next().unwrap_or_default();
                return address.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
            }
        }
        panic!("no master serves slot {slot}");
    }

    /// `kill -9` of the node on `port`.
    pub fn kill(&self, port: u16) {
        let pid =
            std::fs::read_to_string(self.dir.join(port.to_string()).join("redis.pid")).expect("pid file");
        let status = Command::new("kill").args(["-9", pid.trim()]).status().expect("kill runs");
        assert!(status.success(), "kill -9 {pid}");
    }

    /// Waits until another node has taken over `key`'s slot from the master on `dead`.
    ///
    /// # Panics
    /// After `limit` without a new master.
    pub fn wait_for_failover(&self, key: &str, dead: u16, limit: Duration) -> u16 {
        let started = Instant::now();
        loop {
            let live = self
                .ports
                .iter()
                .copied()
                .find(|port| *port != dead && !redis_cli(*port, &["PING"]).is_empty());
            if let Some(live) = live {
                let info = redis_cli(live, &["CLUSTER", "INFO"]);
                if info.contains("cluster_state:ok") {
                    let master = self.master_of(key);
                    if master != dead {
                        return master;
                    }
                }
            }
            assert!(started.elapsed() < limit, "no replica took over from port {dead} within {limit:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
