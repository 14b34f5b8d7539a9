//! Composition the three binaries share, built from [`Settings`]: the PostgreSQL pool, the
//! outbox's event encoder, the housekeeping jobs of SPEC §7 and the metrics recorder with the
//! operational endpoints. Each binary adds what only it runs (the business API and Redis in
//! api-server, the Kafka side in event-worker, the cron loop in scheduler); no binary depends on
//! another.

pub mod dead_letters;

use std::sync::Arc;
use std::time::Duration;

use coupon_domain::clock::Clock;
use coupon_domain::jobs::{JobSettings, Jobs};
use coupon_events_kafka::broker::BrokerConfig;
use coupon_events_kafka::envelope::{JsonEventEncoder, ProducedTopics};
use coupon_events_kafka::security::{KafkaSasl, KafkaSecurity, SaslMechanism};
use coupon_http::ops::{Dependency, OpsState};
use coupon_http::server::AdminServer;
use coupon_runtime::metrics::{Metrics, Sampler};
use coupon_runtime::settings::Settings;
use coupon_store_pg::housekeeping::{PgHousekeeping, PgJobLock};
use coupon_store_pg::pool::{PgConfig, PgPool};
use coupon_store_pg::tls::{PgTls, SslMode};

/// The PostgreSQL pool of `DATABASE_*`. It connects lazily, so a process starts while the
/// database is down and reports it on `/health/ready`.
///
/// # Errors
/// Invalid pool settings.
pub fn pg_pool(settings: &Settings) -> anyhow::Result<PgPool> {
    Ok(PgPool::new(&PgConfig {
        connection_string: settings.database.connection_string(),
        max_size: settings.database.pool_size,
        timeout: settings.database.timeout,
        tls: pg_tls(settings)?,
    })?)
}

/// How connections to PostgreSQL are secured (`DATABASE_SSL_*`).
///
/// # Errors
/// An unknown `DATABASE_SSL_MODE` (the settings refuse one first).
pub fn pg_tls(settings: &Settings) -> anyhow::Result<PgTls> {
    let mode = SslMode::parse(&settings.database.ssl_mode)
        .ok_or_else(|| anyhow::anyhow!("DATABASE_SSL_MODE {:?} is unknown", settings.database.ssl_mode))?;
    Ok(PgTls { mode, root_cert: settings.database.ssl_root_cert.clone() })
}

/// The connection to the Kafka brokers of `KAFKA_*`, as the client `client_id`.
///
/// # Errors
/// An unknown `KAFKA_SASL_MECHANISM` (the settings refuse one first).
pub fn broker_config(settings: &Settings, client_id: &str) -> anyhow::Result<BrokerConfig> {
    let kafka = &settings.kafka;
    let sasl = match kafka.security_protocol.as_str() {
        "SASL_SSL" => Some(KafkaSasl {
            mechanism: SaslMechanism::parse(&kafka.sasl_mechanism).ok_or_else(|| {
                anyhow::anyhow!("KAFKA_SASL_MECHANISM {:?} is unknown", kafka.sasl_mechanism)
            })?,
            username: kafka.sasl_username.clone(),
            password: kafka.sasl_password.clone(),
        }),
        _ => None,
    };
    let tls = (kafka.security_protocol != "PLAINTEXT").then(|| kafka.ssl_ca.clone());
    Ok(BrokerConfig {
        bootstrap_servers: kafka.bootstrap_servers.clone(),
        request_timeout: kafka.request_timeout,
        client_id: client_id.to_owned(),
        security: KafkaSecurity { tls, sasl },
    })
}

/// The outbox's event encoder, with the configured topic names.
pub fn encoder(settings: &Settings) -> Arc<JsonEventEncoder> {
    let topics = &settings.kafka.topics;
    Arc::new(JsonEventEncoder::new(ProducedTopics {
        coupon_issued: topics.coupon_issued.clone(),
        coupon_reserved: topics.coupon_reserved.clone(),
        coupon_used: topics.coupon_used.clone(),
        coupon_cancelled: topics.coupon_cancelled.clone(),
        coupon_expired: topics.coupon_expired.clone(),
        coupon_budget: topics.coupon_budget.clone(),
    }))
}

/// A scheduled run keeps its job's lock at least this long, so a second scheduler pod whose cron
/// tick for the same instant comes a moment later skips it (cron ticks are a second apart at most).
const HOLD_SCHEDULED_LOCK: Duration = Duration::from_millis(500);

/// The housekeeping jobs of SPEC §7 under their PostgreSQL locks, as the scheduler runs them and
/// as `POST /api/admin/jobs/{name}/run` runs them in the api-server.
pub fn jobs(settings: &Settings, pg: &PgPool, clock: Arc<dyn Clock>) -> Jobs {
    Jobs::new(
        Arc::new(PgJobLock::new(pg.clone())),
        Arc::new(PgHousekeeping::new(pg.clone(), encoder(settings))),
        clock,
        coupon_runtime::instance_id(),
        JobSettings {
            batch_size: settings.scheduler.batch_size,
            lease: settings.scheduler.lock_lease,
            hold_at_least: HOLD_SCHEDULED_LOCK,
            zone: settings.coupon.timezone,
        },
    )
}

/// Installs the Prometheus recorder, sampling the pool (and whatever `samplers` add) at each
/// scrape, and the operational endpoints' state over `dependencies`.
///
/// # Errors
/// When a recorder is already installed in this process.
pub fn operations(
    pg: &PgPool,
    samplers: Vec<Sampler>,
    dependencies: Vec<Dependency>,
    probe_timeout: Duration,
) -> anyhow::Result<OpsState> {
    let pool = pg.clone();
    let metrics = samplers.into_iter().fold(
        Metrics::install()?.with_sampler(Arc::new(move || pool.record_metrics())),
        Metrics::with_sampler,
    );
    Ok(OpsState { dependencies, render_metrics: Arc::new(move || metrics.render()), probe_timeout })
}

/// The admin server of event-worker and scheduler on `port` of `HTTP_HOST`: health and metrics.
///
/// # Errors
/// When the port cannot be bound.
pub fn admin_server(
    settings: &Settings,
    port: u16,
    ops: OpsState,
    process: &str,
) -> anyhow::Result<AdminServer> {
    let admin = AdminServer::start(&settings.http.host, port, ops)?;
    tracing::info!(admin_port = admin.port(), "{process} admin server listening");
    Ok(admin)
}

/// The operating system's CSPRNG (`getrandom`), for unique codes (SPEC §11.6).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsEntropy;

impl coupon_domain::codes::Entropy for OsEntropy {
    fn fill(&self, buf: &mut [u8]) -> Result<(), coupon_domain::port::StoreError> {
        getrandom::fill(buf).map_err(|e| {
            coupon_domain::port::StoreError::Unexpected(anyhow::anyhow!(
                "the system's random source failed: {e}"
            ))
        })
    }
}
