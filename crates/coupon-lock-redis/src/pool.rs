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
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;

use coupon_domain::probe::{Probe, ProbeError, ProbeFuture};
use deadpool_redis::{Config, Connection, ConnectionInfo, Pool, PoolConfig, PoolError, Runtime, Timeouts};
use redis::aio::MultiplexedConnection;
use secrecy::{ExposeSecret, SecretString};

/// Most threads with a shared connection of their own.
const MAX_SHARED: usize = 8;

/// Pool settings (built from `REDIS_*`).
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port/`, without credentials.
    pub url: String,
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
    pool: Pool,
    timeout: Duration,
    key_prefix: Arc<str>,
    shared: Arc<Mutex<SharedSlots>>,
}

/// The threads' shared connections, and the generation the next one gets.
#[derive(Default)]
struct SharedSlots {
    by_thread: HashMap<ThreadId, Shared>,
    next_generation: u64,
}

/// The checked-out connection that one thread's commands share; held so the pool counts it as in
/// use.
struct Shared {
    generation: u64,
    connection: MultiplexedConnection,
    _checked_out: Connection,
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPool")
            .field("status", &self.pool.status())
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

impl RedisPool {
    /// Builds the pool lazily: nothing connects until first use.
    ///
    /// # Errors
    /// When the URL or sizes are invalid.
    pub fn new(config: &RedisConfig) -> Result<Self, RedisError> {
        let mut info: ConnectionInfo = redis::IntoConnectionInfo::into_connection_info(config.url.as_str())
            .map_err(|e| RedisError::Build(e.to_string()))?
            .into();
        info.redis.username.clone_from(&config.username);
        info.redis.password = config.password.as_ref().map(|p| p.expose_secret().to_owned());
        let mut cfg = Config::from_connection_info(info);
        let mut pool_cfg = PoolConfig::new(config.max_size);
        pool_cfg.timeouts = Timeouts {
            wait: Some(config.timeout),
            create: Some(config.timeout),
            recycle: Some(config.timeout),
        };
        cfg.pool = Some(pool_cfg);
        let pool = cfg.create_pool(Some(Runtime::Tokio1)).map_err(|e| RedisError::Build(e.to_string()))?;
        Ok(Self {
            pool,
            timeout: config.timeout,
            key_prefix: Arc::from(config.key_prefix.as_str()),
            shared: Arc::default(),
        })
    }

    /// This thread's shared connection (checking one out when it has none) and its generation.
    async fn shared(&self) -> Result<(u64, MultiplexedConnection), RedisError> {
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
        let checked_out = self.get().await?;
        let connection = (*checked_out).clone();
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
    async fn run<T, F>(&self, command: impl FnOnce(MultiplexedConnection) -> F) -> Result<T, RedisError>
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

    /// A connection, waiting at most the configured timeout.
    ///
    /// # Errors
    /// When Redis is unreachable or the pool stays exhausted.
    async fn get(&self) -> Result<Connection, RedisError> {
        Ok(self.pool.get().await?)
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

    /// Publishes pool gauges (`redis_pool_connections{state}`, `redis_pool_waiting`).
    pub fn record_metrics(&self) {
        let status = self.pool.status();
        metrics::gauge!("redis_pool_connections", "state" => "total").set(status.size as f64);
        metrics::gauge!("redis_pool_connections", "state" => "idle").set(status.available as f64);
        metrics::gauge!("redis_pool_connections", "state" => "max").set(status.max_size as f64);
        metrics::gauge!("redis_pool_waiting").set(status.waiting as f64);
    }

    /// A readiness probe sending `PING`.
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
            let pong: String = self.pool.query(&redis::cmd("PING")).await.map_err(|e| match e {
                RedisError::Timeout(_) => ProbeError::timeout(e),
                RedisError::Unavailable(PoolError::Backend(ref c)) | RedisError::Command(ref c)
                    if refused_credentials(c) =>
                {
                    ProbeError::auth_failed(e)
                }
                RedisError::Unavailable(_) => ProbeError::unreachable(e),
                RedisError::Command(ref c) if c.is_io_error() || c.is_connection_refusal() => {
                    ProbeError::unreachable(e)
                }
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
