//! Composition root of `event-worker`: the Kafka side of the service (outbox relay and consumers,
//! SPEC §6). Pods may run in any number; they share the partitions of the consumed topics.
//!
//! Start-up never waits for Kafka: the broker connection (and creation of the SPEC §6 topics, DLQs
//! included) happens in the background with back-off, and `/health/ready` reports `kafka` down
//! until it succeeds. Metrics and health are served on `WORKER_ADMIN_PORT`.

use std::sync::Arc;

use coupon_api::ops::OpsState;
use coupon_api::server::AdminServer;
use coupon_events_kafka::broker::{BrokerConfig, LazyBroker};
use coupon_runtime::metrics::Metrics;
use coupon_runtime::settings::Settings;
use coupon_runtime::shutdown;
use coupon_store_pg::pool::{PgConfig, PgPool};
use tokio_util::sync::CancellationToken;

/// A built event-worker, its admin port bound.
pub struct App {
    settings: Settings,
    broker: LazyBroker,
    admin: AdminServer,
    cancel: CancellationToken,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("admin_port", &self.admin.port()).finish_non_exhaustive()
    }
}

impl App {
    /// Builds the adapters and binds the admin port.
    ///
    /// # Errors
    /// Invalid pool settings, or the admin port cannot be bound.
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        let pg = PgPool::new(&PgConfig {
            connection_string: settings.database.connection_string(),
            max_size: settings.database.pool_size,
            timeout: settings.database.timeout,
        })?;
        let broker = LazyBroker::default();
        let metrics = {
            let pg = pg.clone();
            Metrics::install()?.with_sampler(Arc::new(move || pg.record_metrics()))
        };
        let ops = OpsState {
            probes: vec![pg.probe(), broker.probe()],
            render_metrics: Arc::new(move || metrics.render()),
            probe_timeout: settings.database.timeout.max(settings.kafka.request_timeout),
        };
        let admin = AdminServer::start(&settings.http.host, settings.worker.admin_port, ops)?;
        tracing::info!(admin_port = admin.port(), "event-worker admin server listening");
        Ok(Self { settings, broker, admin, cancel: CancellationToken::new() })
    }

    /// Port of `/metrics` and `/health/*`.
    pub fn admin_port(&self) -> u16 {
        self.admin.port()
    }

    /// Cancelling it stops the worker as SIGTERM would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Runs until SIGTERM/SIGINT (or the shutdown token), then stops background work and the
    /// admin server.
    ///
    /// # Errors
    /// When the admin server fails.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self { settings, broker, admin, cancel } = self;
        let kafka = &settings.kafka;
        let config = BrokerConfig {
            bootstrap_servers: kafka.bootstrap_servers.clone(),
            request_timeout: kafka.request_timeout,
            client_id: "coupon-event-worker".into(),
        };
        let topics = kafka.topics.all_with_dlq();
        let connect = broker.connect(&config, &topics, kafka.partitions, kafka.replication_factor, &cancel);
        tokio::join!(connect, shutdown::wait(&cancel));
        admin.stop().await?;
        tracing::info!("event-worker stopped");
        Ok(())
    }
}
