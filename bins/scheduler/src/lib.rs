//! Composition root of `scheduler`: the cron jobs of SPEC §7 (reservation timeout, expiry,
//! statistics). Pods may run in any number; a cluster-wide lock per job keeps each job on one pod
//! at a time. Metrics and health are served on `SCHEDULER_ADMIN_PORT`.

use std::sync::Arc;

use coupon_api::ops::OpsState;
use coupon_api::server::AdminServer;
use coupon_runtime::metrics::Metrics;
use coupon_runtime::settings::Settings;
use coupon_runtime::shutdown;
use coupon_store_pg::pool::{PgConfig, PgPool};
use tokio_util::sync::CancellationToken;

/// A built scheduler, its admin port bound.
pub struct App {
    settings: Settings,
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
        let metrics = {
            let pg = pg.clone();
            Metrics::install()?.with_sampler(Arc::new(move || pg.record_metrics()))
        };
        let ops = OpsState {
            probes: vec![pg.probe()],
            render_metrics: Arc::new(move || metrics.render()),
            probe_timeout: settings.database.timeout,
        };
        let admin = AdminServer::start(&settings.http.host, settings.scheduler.admin_port, ops)?;
        tracing::info!(admin_port = admin.port(), "scheduler admin server listening");
        Ok(Self { settings, admin, cancel: CancellationToken::new() })
    }

    /// Port of `/metrics` and `/health/*`.
    pub fn admin_port(&self) -> u16 {
        self.admin.port()
    }

    /// Cancelling it stops the scheduler as SIGTERM would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Runs until SIGTERM/SIGINT (or the shutdown token), then stops the admin server.
    ///
    /// # Errors
    /// When the admin server fails.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self { settings, admin, cancel } = self;
        let s = &settings.scheduler;
        tracing::info!(
            reservation_timeout = s.reservation_timeout_cron.expression,
            expiry = s.expiry_cron.expression,
            statistics = s.statistics_cron.expression,
            "job schedules loaded"
        );
        shutdown::wait(&cancel).await;
        admin.stop().await?;
        tracing::info!("scheduler stopped");
        Ok(())
    }
}
