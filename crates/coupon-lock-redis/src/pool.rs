//! The Redis connection pool, with timeouts on connect, checkout and replies so that a dead Redis
//! degrades to a fast error instead of stalling requests.
//!
//! Commands share a connection from the pool rather than checking one out each. deadpool checks
//! every checkout with an `UNWATCH` + `PING` round trip, which doubled the round trips of every
//! command (a first-come issue made four instead of two). The pool's connections are multiplexed:
//! concurrent commands are pipelined over one socket in order, which suits the single-command
//! scripts this crate runs (no `WATCH`, `MULTI` or blocking commands). Each thread that runs
//! commands (an HTTP worker has one) gets its own shared connection, whose socket that thread's
//! event loop drives: one connection for the whole process made the other worker's commands wait
//! for a foreign loop (ADR 10). A connection that fails or times out is given back with every
//! other thread's, and each thread's next command checks out (and so checks) another.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;

use coupon_domain::probe::{Probe, ProbeError, ProbeFuture};
use deadpool_redis::{Connection, Manager, Pool, PoolConfig, PoolError, Runtime, Timeouts};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo, Slot};
use redis::{ConnectionInfo, IntoConnectionInfo, TlsCertificates};
use secrecy::{ExposeSecret, SecretString};

/// Most threads with a shared connection of their own.
const MAX_SHARED: usize = 8;

/// Pool settings (built from `REDIS_*`).
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub target: RedisTarget,
    /// `None`: plain text.
    pub tls: Option<RedisTls>,
    /// The ACL user; `None`: the default user.
    pub username: Option<String>,
    /// `None`: no AUTH.
    pub password: Option<SecretString>,
    pub max_size: usize,
    /// Bound on connecting, on waiting for a free connection, and on each reply.
    pub timeout: Duration,
    /// Prefix of every key this process writes.
    pub key_prefix: String,
}

/// Which Redis the pool talks to.
#[derive(Debug, Clone)]
pub enum RedisTarget {
    /// One server, `host:port`.
    Node(String),
    /// A Redis Cluster, found through any of these members (`host:port`); commands go to the
    /// master of their keys' slot and follow the cluster through resharding and failover.
    Cluster(Vec<String>),
}

/// TLS towards Redis (`REDIS_TLS`): the server's certificate must chain to a trusted root and be
/// issued for the host connected to.
#[derive(Debug, Clone, Default)]
pub struct RedisTls {
    /// `REDIS_TLS_CA`: PEM file of the roots to trust; `None`: the system's.
    pub ca_file: Option<PathBuf>,
}

/// Redis could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("invalid Redis configuration: {0}")]
    Build(String),
    #[error("no Redis connection: {0}")]
    Unavailable(#[from] PoolError),
    #[error("Redis command failed: {0}")]
    Command(#[from] redis::RedisError),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected Redis reply: {0}")]
    Reply(String),
    #[error("the Redis batcher stopped before answering")]
    Abandoned,
}

/// The process's Redis pool; cheap to clone.
#[derive(Clone)]
pub struct RedisPool {
    source: Source,
    timeout: Duration,
    key_prefix: Arc<str>,
    shared: Arc<Mutex<SharedSlots>>,
}

/// Where the threads' shared connections come from.
#[derive(Clone)]
enum Source {
    /// A pool of connections to one server.
    Node(Pool),
    /// A cluster client: each connection it opens reaches every master (and is multiplexed).
    Cluster(Arc<ClusterClient>),
}

/// A connection to one server or to the whole cluster.
#[derive(Clone)]
enum Conn {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Node(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Node(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Which calls one Redis round trip may carry together: on a cluster, only those whose keys are
/// in one slot (a pipeline or script goes to one master).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Shard(Option<Slot>);

/// The threads' shared connections, and the generation the next one gets.
#[derive(Default)]
struct SharedSlots {
    by_thread: HashMap<ThreadId, Shared>,
    next_generation: u64,
}

/// The connection that one thread's commands share; a pooled one is held so the pool counts it
/// as in use.
struct Shared {
    generation: u64,
    connection: Conn,
    _checked_out: Option<Connection>,
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("RedisPool");
        match &self.source {
            Source::Node(pool) => debug.field("status", &pool.status()),
            Source::Cluster(_) => debug.field("cluster", &true),
        };
        debug.field("key_prefix", &self.key_prefix).finish()
    }
}

/// `host:port` as a connection address (`rediss://` under TLS) with the credentials.
fn connection_info(node: &str, config: &RedisConfig) -> Result<ConnectionInfo, RedisError> {
    let scheme = if config.tls.is_some() { "rediss" } else { "redis" };
    let info =
        format!("{scheme}://{node}/").into_connection_info().map_err(|e| RedisError::Build(e.to_string()))?;
    let mut redis = info.redis_settings().clone();
    if let Some(username) = &config.username {
        redis = redis.set_username(username);
    }
    if let Some(password) = &config.password {
        redis = redis.set_password(password.expose_secret());
    }
    Ok(info.set_redis_settings(redis))
}

/// The roots `REDIS_TLS_CA` names, as the driver takes them; `None`: the system's.
fn certificates(tls: &RedisTls) -> Result<Option<TlsCertificates>, RedisError> {
    let Some(path) = &tls.ca_file else { return Ok(None) };
    coupon_tls::root_certificates(Some(path), "REDIS_TLS_CA").map_err(RedisError::Build)?;
    let pem = std::fs::read(path)
        .map_err(|e| RedisError::Build(format!("REDIS_TLS_CA {}: {e}", path.display())))?;
    Ok(Some(TlsCertificates { client_tls: None, root_cert: Some(pem) }))
}

impl RedisPool {
    /// Builds the pool lazily: nothing connects until first use.
    ///
    /// # Errors
    /// When an address, the sizes or the TLS roots are invalid.
    pub fn new(config: &RedisConfig) -> Result<Self, RedisError> {
        let build = |e: redis::RedisError| RedisError::Build(e.to_string());
        let certificates = config.tls.as_ref().map(certificates).transpose()?.flatten();
        let source = match &config.target {
            RedisTarget::Node(node) => {
                let info = connection_info(node, config)?;
                let client = match certificates {
                    Some(certificates) => redis::Client::build_with_tls(info, certificates),
                    None => redis::Client::open(info),
                }
                .map_err(build)?;
                let manager = Manager::new(client.get_connection_info().clone()).map_err(build)?;
                let mut pool_cfg = PoolConfig::new(config.max_size);
                pool_cfg.timeouts = Timeouts {
                    wait: Some(config.timeout),
                    create: Some(config.timeout),
                    recycle: Some(config.timeout),
                };
                let pool = Pool::builder(manager)
                    .config(pool_cfg)
                    .runtime(Runtime::Tokio1)
                    .build()
                    .map_err(|e| RedisError::Build(e.to_string()))?;
                Source::Node(pool)
            }
            RedisTarget::Cluster(nodes) => {
                let infos =
                    nodes.iter().map(|node| connection_info(node, config)).collect::<Result<Vec<_>, _>>()?;
                let mut builder = ClusterClientBuilder::new(infos)
                    .connection_timeout(config.timeout)
                    .response_timeout(config.timeout);
                if let Some(certificates) = certificates {
                    builder = builder.certs(certificates);
                }
                Source::Cluster(Arc::new(builder.build().map_err(build)?))
            }
        };
        Ok(Self {
            source,
            timeout: config.timeout,
            key_prefix: Arc::from(config.key_prefix.as_str()),
            shared: Arc::default(),
        })
    }

    /// Which calls may share a round trip with one about `key`.
    pub(crate) fn shard(&self, key: &str) -> Shard {
        Shard(matches!(self.source, Source::Cluster(_)).then(|| Slot::for_key(key)))
    }

    /// A new connection: checked out of the pool of a single server, or opened to the cluster.
    async fn open(&self) -> Result<(Conn, Option<Connection>), RedisError> {
        match &self.source {
            Source::Node(pool) => {
                let checked_out = pool.get().await?;
                Ok((Conn::Node((*checked_out).clone()), Some(checked_out)))
            }
            Source::Cluster(client) => {
                match tokio::time::timeout(self.timeout, client.get_async_connection()).await {
                    Ok(connection) => Ok((Conn::Cluster(connection?), None)),
                    Err(_) => Err(RedisError::Timeout(self.timeout)),
                }
            }
        }
    }

    /// This thread's shared connection (checking one out when it has none) and its generation.
    async fn shared(&self) -> Result<(u64, Conn), RedisError> {
        let thread = std::thread::current().id();
        {
            let slots = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
            // Past MAX_SHARED threads a thread borrows another's connection instead of holding
            // more of the pool (a thread that ended keeps its entry until that connection fails).
            let by_thread = &slots.by_thread;
            if let Some(shared) = by_thread
                .get(&thread)
                .or_else(|| by_thread.values().next().filter(|_| by_thread.len() >= MAX_SHARED))
            {
                return Ok((shared.generation, shared.connection.clone()));
            }
        }
        let (connection, checked_out) = self.open().await?;
        let mut slots = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(shared) = slots.by_thread.get(&thread) {
            return Ok((shared.generation, shared.connection.clone()));
        }
        let generation = slots.next_generation;
        slots.next_generation += 1;
        slots
            .by_thread
            .insert(thread, Shared { generation, connection: connection.clone(), _checked_out: checked_out });
        Ok((generation, connection))
    }

    /// Gives every shared connection back to the pool after the one of `generation` failed. What
    /// breaks one connection (Redis restarted, the network cut) breaks the others too, and a thread
    /// that was idle meanwhile would otherwise fail its next command on a dead socket: each thread
    /// checks out (and so checks) a fresh one on its next command. Only the first report of a
    /// failure clears them; a later report about a connection already given back changes nothing,
    /// so the fresh connections are not thrown away again.
    fn discard(&self, generation: u64) {
        let mut slots = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.by_thread.values().any(|shared| shared.generation == generation) {
            slots.by_thread.clear();
        }
    }

    /// Runs `command` on the shared connection with the reply timeout; a connection that fails
    /// (not a command that Redis refused) is discarded.
    async fn run<T, F>(&self, command: impl FnOnce(Conn) -> F) -> Result<T, RedisError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let (generation, connection) = self.shared().await?;
        match tokio::time::timeout(self.timeout, command(connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_timeout()
                    || e.is_unrecoverable_error()
                {
                    self.discard(generation);
                }
                Err(e.into())
            }
            Err(_) => {
                self.discard(generation);
                Err(RedisError::Timeout(self.timeout))
            }
        }
    }

    /// `name` under this process's key prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.key_prefix)
    }

    /// Runs one command with the reply timeout.
    ///
    /// # Errors
    /// On connection, command or timeout failure.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        self.run(async |mut conn| cmd.query_async(&mut conn).await).await
    }

    /// Runs a pipeline (one round trip) with the reply timeout.
    ///
    /// # Errors
    /// On connection, command or timeout failure.
    pub async fn pipeline<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, RedisError> {
        self.run(async |mut conn| pipe.query_async(&mut conn).await).await
    }

    /// Runs a Lua script (EVALSHA, loading it on first use) with the reply timeout.
    ///
    /// # Errors
    /// On connection, script or timeout failure.
    pub async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, RedisError> {
        self.run(async |mut conn| invocation.invoke_async(&mut conn).await).await
    }

    /// `PING` to the server, or to every master of a cluster.
    async fn ping(&self) -> Result<String, RedisError> {
        self.run(async |conn| {
            let reply = match conn {
                Conn::Node(mut node) => redis::cmd("PING").query_async(&mut node).await?,
                Conn::Cluster(mut cluster) => {
                    let masters = (MultipleNodeRoutingInfo::AllMasters, Some(ResponsePolicy::AllSucceeded));
                    cluster.route_command(redis::cmd("PING"), RoutingInfo::MultiNode(masters)).await?
                }
            };
            Ok(redis::from_redis_value(reply)?)
        })
        .await
    }

    /// Publishes pool gauges (`redis_pool_connections{state}`, `redis_pool_waiting`). On a cluster
    /// the connections are the threads' shared ones, each reaching every master.
    pub fn record_metrics(&self) {
        let (total, idle, max, waiting) = match &self.source {
            Source::Node(pool) => {
                let status = pool.status();
                (status.size, status.available, status.max_size, status.waiting)
            }
            Source::Cluster(_) => {
                let shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner).by_thread.len();
                (shared, 0, MAX_SHARED, 0)
            }
        };
        metrics::gauge!("redis_pool_connections", "state" => "total").set(total as f64);
        metrics::gauge!("redis_pool_connections", "state" => "idle").set(idle as f64);
        metrics::gauge!("redis_pool_connections", "state" => "max").set(max as f64);
        metrics::gauge!("redis_pool_waiting").set(waiting as f64);
    }

    /// A readiness probe sending `PING`: to the server, or to every master of a cluster (each
    /// slot's master must answer).
    pub fn probe(&self) -> Arc<dyn Probe> {
        Arc::new(RedisProbe { pool: self.clone() })
    }
}

/// Redis refused who we are: a wrong user or password (`WRONGPASS`), or none given where one is
/// required (`NOAUTH`).
fn refused_credentials(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
}

struct RedisProbe {
    pool: RedisPool,
}

impl Probe for RedisProbe {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn check(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            let pong = self.pool.ping().await.map_err(|e| match e {
                RedisError::Timeout(_) => ProbeError::timeout(e),
                RedisError::Unavailable(PoolError::Backend(ref c)) | RedisError::Command(ref c) => {
                    if refused_credentials(c) {
                        ProbeError::auth_failed(e)
                    } else if let Some(reason) = coupon_tls::failure_reason(c) {
                        ProbeError { reason, detail: e.to_string() }
                    } else if c.is_timeout() {
                        ProbeError::timeout(e)
                    } else if c.is_io_error() || c.is_connection_refusal() {
                        ProbeError::unreachable(e)
                    } else {
                        ProbeError::error(e)
                    }
                }
                RedisError::Unavailable(_) => ProbeError::unreachable(e),
                _ => ProbeError::error(e),
            })?;
            if pong == "PONG" {
                Ok(())
            } else {
                Err(ProbeError::unexpected_reply(format!("PING answered {pong:?}")))
            }
        })
    }
}
