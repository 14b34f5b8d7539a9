//! The Redis connection pool, with timeouts on connect, checkout and replies so that a dead Redis
//! degrades to a fast error instead of stalling requests.

use std::sync::Arc;
use std::time::Duration;

use coupon_domain::probe::{Probe, ProbeError, ProbeFuture};
use deadpool_redis::{Config, Connection, Pool, PoolConfig, Runtime, Timeouts};

/// Pool settings (built from `REDIS_*`).
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: String,
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
    Unavailable(#[from] deadpool_redis::PoolError),
    #[error("Redis command failed: {0}")]
    Command(#[from] redis::RedisError),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// The process's Redis pool; cheap to clone.
#[derive(Clone)]
pub struct RedisPool {
    pool: Pool,
    timeout: Duration,
    key_prefix: Arc<str>,
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
        let mut cfg = Config::from_url(config.url.clone());
        let mut pool_cfg = PoolConfig::new(config.max_size);
        pool_cfg.timeouts = Timeouts {
            wait: Some(config.timeout),
            create: Some(config.timeout),
            recycle: Some(config.timeout),
        };
        cfg.pool = Some(pool_cfg);
        let pool = cfg.create_pool(Some(Runtime::Tokio1)).map_err(|e| RedisError::Build(e.to_string()))?;
        Ok(Self { pool, timeout: config.timeout, key_prefix: Arc::from(config.key_prefix.as_str()) })
    }

    /// A connection, waiting at most the configured timeout.
    ///
    /// # Errors
    /// When Redis is unreachable or the pool stays exhausted.
    pub async fn get(&self) -> Result<Connection, RedisError> {
        Ok(self.pool.get().await?)
    }

    /// `name` under this process's key prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.key_prefix)
    }

    /// Runs one command (or pipeline) with the reply timeout.
    ///
    /// # Errors
    /// On connection, command or timeout failure.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        let mut conn = self.get().await?;
        match tokio::time::timeout(self.timeout, cmd.query_async(&mut conn)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(RedisError::Timeout(self.timeout)),
        }
    }

    /// Runs a Lua script (EVALSHA, loading it on first use) with the reply timeout.
    ///
    /// # Errors
    /// On connection, script or timeout failure.
    pub async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, RedisError> {
        let mut conn = self.get().await?;
        match tokio::time::timeout(self.timeout, invocation.invoke_async(&mut conn)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(RedisError::Timeout(self.timeout)),
        }
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

struct RedisProbe {
    pool: RedisPool,
}

impl Probe for RedisProbe {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn check(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            let pong: String =
                self.pool.query(&redis::cmd("PING")).await.map_err(|e| ProbeError(e.to_string()))?;
            if pong == "PONG" { Ok(()) } else { Err(ProbeError(format!("unexpected PING reply {pong:?}"))) }
        })
    }
}
