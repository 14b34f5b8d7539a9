//! The connection pool. diesel-async connections over tokio-postgres, pooled by deadpool, with
//! timeouts on connect and checkout so that a dead database turns into a fast 503 instead of a
//! hung request.
//!
//! A connection's I/O is driven by a task on the runtime that opened it. An HTTP worker runs a
//! single-threaded runtime of its own, so a connection opened by one worker and used by another
//! costs two wake-ups of a foreign thread per statement (the request, then the answer). Reads run
//! straight from request handlers therefore use [`PgPool::get_local`]: connections of the calling
//! thread's own pool, opened and driven there.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;
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

/// The process's PostgreSQL pool; cheap to clone. Besides its shared connections it keeps a small
/// pool for each thread that asks for local ones ([`PgPool::get_local`]).
#[derive(Clone)]
pub struct PgPool {
    pool: Pool<AsyncPgConnection>,
    config: PgConfig,
    local: Arc<Local>,
}

/// The pools of [`PgPool::get_local`]: one per calling thread, each of at most `max_size`.
struct Local {
    max_size: usize,
    pools: Mutex<HashMap<ThreadId, Pool<AsyncPgConnection>>>,
}

impl Local {
    fn new(max_size: usize) -> Arc<Self> {
        Arc::new(Self { max_size, pools: Mutex::default() })
    }
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool")
            .field("status", &self.pool.status())
            .field("local_max_size", &self.local.max_size)
            .finish()
    }
}

impl PgPool {
    /// Builds the pool lazily: no connection is opened until the first checkout, so a process can
    /// start (and report itself not ready) while the database is down. Each thread's local pool
    /// holds up to `config.max_size` connections unless [`PgPool::with_local_size`] sets another size.
    ///
    /// # Errors
    /// When the configuration is invalid.
    pub fn new(config: &PgConfig) -> Result<Self, PgPoolError> {
        Ok(Self {
            pool: build(config, config.max_size)?,
            config: config.clone(),
            local: Local::new(config.max_size),
        })
    }

    /// The same pool with each thread's local pool holding at most `max_size` connections (at
    /// least one).
    #[must_use]
    pub fn with_local_size(self, max_size: usize) -> Self {
        Self { local: Local::new(max_size.max(1)), ..self }
    }

    /// Another pool with the same settings and none of this one's connections. A connection's
    /// I/O is driven by the runtime that opened it, so work that runs on its own runtime (the
    /// issue batchers, see `group_commit`) needs connections of its own.
    ///
    /// # Errors
    /// Never in practice: the settings were accepted once already.
    pub fn sibling(&self) -> Result<Self, PgPoolError> {
        Ok(Self::new(&self.config)?.with_local_size(self.local.max_size))
    }

    /// A connection from the shared pool, waiting at most the configured timeout.
    ///
    /// # Errors
    /// When the database is unreachable or the pool stays exhausted for the whole timeout.
    pub async fn get(&self) -> Result<PgConn, PgPoolError> {
        Ok(self.pool.get().await?)
    }

    /// A connection of the calling thread's own pool, opened on (so driven by) this thread's
    /// runtime, waiting at most the configured timeout. For statements a request handler runs
    /// itself on an HTTP worker; work handed to a task elsewhere uses [`PgPool::get`]. A thread's
    /// pool lives as long as this pool, so only long-lived threads should ask.
    ///
    /// # Errors
    /// As [`PgPool::get`].
    pub async fn get_local(&self) -> Result<PgConn, PgPoolError> {
        let pool = {
            let mut pools = self.local.pools.lock().unwrap_or_else(PoisonError::into_inner);
            match pools.entry(std::thread::current().id()) {
                Entry::Occupied(pool) => pool.get().clone(),
                Entry::Vacant(slot) => slot.insert(build(&self.config, self.local.max_size)?).clone(),
            }
        };
        Ok(pool.get().await?)
    }

    /// Publishes pool gauges (`db_pool_connections{state}`, `db_pool_waiting`) of the shared and
    /// every thread's local connections together; called at scrape.
    pub fn record_metrics(&self) {
        let mut statuses = vec![self.pool.status()];
        statuses.extend(
            self.local.pools.lock().unwrap_or_else(PoisonError::into_inner).values().map(Pool::status),
        );
        let sum = |part: fn(&deadpool::Status) -> usize| statuses.iter().map(part).sum::<usize>() as f64;
        metrics::gauge!("db_pool_connections", "state" => "total").set(sum(|s| s.size));
        metrics::gauge!("db_pool_connections", "state" => "idle").set(sum(|s| s.available));
        metrics::gauge!("db_pool_connections", "state" => "max").set(sum(|s| s.max_size));
        metrics::gauge!("db_pool_waiting").set(sum(|s| s.waiting));
    }

    /// A readiness probe running `SELECT 1`.
    pub fn probe(&self) -> Arc<dyn Probe> {
        Arc::new(PgProbe { pool: self.clone() })
    }
}

/// A deadpool of at most `max_size` connections with `config`'s settings, connecting lazily.
fn build(config: &PgConfig, max_size: usize) -> Result<Pool<AsyncPgConnection>, PgPoolError> {
    // Fast: a checkout does not send `SELECT 1` first. A connection whose socket closed (the
    // server restarted, the backend was killed) is still discarded, because diesel-async reports
    // it broken; one that dies silently fails its first statement, which answers 503 and breaks
    // it. The verified checkout cost a round trip through the busy event loop every time: 2.3 ms
    // of each 8-10 ms first-come batch cycle.
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
    Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(config.timeout))
        .create_timeout(Some(config.timeout))
        .recycle_timeout(Some(config.timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| PgPoolError::Build(e.to_string()))
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
