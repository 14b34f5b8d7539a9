//! The connection pool. diesel-async connections over tokio-postgres, pooled by deadpool, with
//! timeouts on connect and checkout so that a dead database turns into a fast 503 instead of a
//! hung request.

use std::sync::Arc;
use std::time::Duration;

use coupon_domain::probe::{Probe, ProbeError, ProbeFuture};
use diesel_async::pooled_connection::deadpool::{Object, Pool, PoolError};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use secrecy::{ExposeSecret, SecretString};

use crate::tls::{self, PgTls};

/// A pooled connection.
pub type PgConn = Object<AsyncPgConnection>;

/// Pool settings (built from `DATABASE_*`).
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// libpq-style connection string; holds the password.
    pub connection_string: SecretString,
    pub max_size: usize,
    /// Bound on connecting and on waiting for a free connection.
    pub timeout: Duration,
    pub tls: PgTls,
}

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum PgPoolError {
    #[error("invalid pool configuration: {0}")]
    Build(String),
    #[error("no database connection: {0}")]
    Unavailable(#[from] PoolError),
}

/// The process's PostgreSQL pool; cheap to clone.
#[derive(Clone)]
pub struct PgPool {
    pool: Pool<AsyncPgConnection>,
    config: PgConfig,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool").field("status", &self.pool.status()).finish()
    }
}

impl PgPool {
    /// Builds the pool lazily: no connection is opened until the first checkout, so a process can
    /// start (and report itself not ready) while the database is down.
    ///
    /// # Errors
    /// When the configuration is invalid.
    pub fn new(config: &PgConfig) -> Result<Self, PgPoolError> {
        // Fast: a checkout does not send `SELECT 1` first. A connection whose socket closed (the
        // server restarted, the backend was killed) is still discarded, because diesel-async
        // reports it broken; one that dies silently fails its first statement, which answers 503
        // and breaks it. The verified checkout cost a round trip through the busy event loop
        // every time: 2.3 ms of each 8-10 ms first-come batch cycle.
        let mut manager_config = ManagerConfig::default();
        manager_config.recycling_method = RecyclingMethod::Fast;
        let connector = config.tls.connector().map_err(PgPoolError::Build)?;
        manager_config.custom_setup = Box::new(move |url| {
            let connector = connector.clone();
            Box::pin(async move { tls::connect(url, &connector).await })
        });
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
            config.connection_string.expose_secret(),
            manager_config,
        );
        let pool = Pool::builder(manager)
            .max_size(config.max_size)
            .wait_timeout(Some(config.timeout))
            .create_timeout(Some(config.timeout))
            .recycle_timeout(Some(config.timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| PgPoolError::Build(e.to_string()))?;
        Ok(Self { pool, config: config.clone() })
    }

    /// Another pool with the same settings and none of this one's connections. A connection's
    /// I/O is driven by the runtime that opened it, so work that runs on its own runtime (the
    /// issue batchers, see `group_commit`) needs connections of its own.
    ///
    /// # Errors
    /// Never in practice: the settings were accepted once already.
    pub fn sibling(&self) -> Result<Self, PgPoolError> {
        Self::new(&self.config)
    }

    /// A connection from the pool, waiting at most the configured timeout.
    ///
    /// # Errors
    /// When the database is unreachable or the pool stays exhausted for the whole timeout.
    pub async fn get(&self) -> Result<PgConn, PgPoolError> {
        Ok(self.pool.get().await?)
    }

    /// Publishes pool gauges (`db_pool_connections{state}`, `db_pool_waiting`); called at scrape.
    pub fn record_metrics(&self) {
        let status = self.pool.status();
        metrics::gauge!("db_pool_connections", "state" => "total").set(status.size as f64);
        metrics::gauge!("db_pool_connections", "state" => "idle").set(status.available as f64);
        metrics::gauge!("db_pool_connections", "state" => "max").set(status.max_size as f64);
        metrics::gauge!("db_pool_waiting").set(status.waiting as f64);
    }

    /// A readiness probe running `SELECT 1`.
    pub fn probe(&self) -> Arc<dyn Probe> {
        Arc::new(PgProbe { pool: self.clone() })
    }
}

struct PgProbe {
    pool: PgPool,
}

impl Probe for PgProbe {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn check(&self) -> ProbeFuture<'_> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(|e| match e {
                PgPoolError::Unavailable(PoolError::Timeout(_)) => ProbeError::timeout(e),
                _ => match tls::reason_in(&e.to_string()) {
                    Some(reason) => ProbeError { reason, detail: e.to_string() },
                    None => ProbeError::unreachable(e),
                },
            })?;
            diesel::sql_query("SELECT 1").execute(&mut conn).await.map(|_| ()).map_err(ProbeError::error)
        })
    }
}
