//! Composition root of `scheduler`: the cron jobs of SPEC §7 (reservation timeout, expiry,
//! statistics). Pods may run in any number; a cluster-wide lock per job keeps each job on one pod
//! at a time. Metrics and health are served on `SCHEDULER_ADMIN_PORT`.

use coupon_domain::clock::{Clock, SystemClock};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use coupon_domain::jobs::{JobName, JobOutcome, Jobs, Trigger};
use coupon_http::ops::Dependency;
use coupon_http::server::AdminServer;
use coupon_runtime::settings::{CronSchedule, Settings};
use coupon_runtime::shutdown;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// A built scheduler, its admin port bound.
pub struct App {
    settings: Settings,
    jobs: Jobs,
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
        let pg = coupon_wiring::pg_pool(&settings)?;
        let ops = coupon_wiring::operations(
            &pg,
            Vec::new(),
            vec![Dependency::required(pg.probe())],
            settings.database.timeout,
        )?;
        let admin = coupon_wiring::admin_server(&settings, settings.scheduler.admin_port, ops, "scheduler")?;
        let jobs = coupon_wiring::jobs(&settings, &pg, Arc::new(SystemClock));
        tracing::info!(holder = jobs.holder(), "scheduler ready");
        Ok(Self { settings, jobs, admin, cancel: CancellationToken::new() })
    }

    /// Port of `/metrics` and `/health/*`.
    pub fn admin_port(&self) -> u16 {
        self.admin.port()
    }

    /// Cancelling it stops the scheduler as SIGTERM would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Runs the jobs on their schedules until SIGTERM/SIGINT (or the shutdown token). A run in
    /// progress finishes its current batch loop before the scheduler stops; then the admin server
    /// stops.
    ///
    /// # Errors
    /// When the admin server fails.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self { settings, jobs, admin, cancel } = self;
        let s = &settings.scheduler;
        tracing::info!(
            reservation_timeout = s.reservation_timeout_cron.expression,
            expiry = s.expiry_cron.expression,
            statistics = s.statistics_cron.expression,
            "job schedules loaded"
        );
        let stop = CancellationToken::new();
        let tasks: Vec<_> = [
            (JobName::ReservationTimeout, &s.reservation_timeout_cron),
            (JobName::Expiry, &s.expiry_cron),
            (JobName::Statistics, &s.statistics_cron),
        ]
        .into_iter()
        .map(|(job, cron)| {
            let zone = settings.coupon.timezone;
            tokio::spawn(on_schedule(jobs.clone(), job, cron.clone(), zone, stop.clone()))
        })
        .collect();
        shutdown::wait(&cancel).await;
        stop.cancel();
        let drain = futures::future::join_all(tasks);
        if tokio::time::timeout(settings.http.shutdown_timeout, drain).await.is_err() {
            tracing::warn!("a job was still running when the shutdown timeout passed");
        }
        admin.stop().await?;
        tracing::info!("scheduler stopped");
        Ok(())
    }
}

/// The first instant of `cron` after `after`, the expression read in the business time zone
/// (SPEC §10: `0 0 0 * * *` is midnight in `COUPON_TIMEZONE`, not in UTC).
fn next_run(cron: &CronSchedule, after: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
    cron.schedule.after(&after.with_timezone(&zone)).next().map(|t| t.with_timezone(&Utc))
}

/// Runs `job` at each instant of `cron` (in `zone`) until `stop`. Ticks missed while a run was in
/// progress are skipped, not queued: every job catches up with all due rows in one run.
async fn on_schedule(jobs: Jobs, job: JobName, cron: CronSchedule, zone: Tz, stop: CancellationToken) {
    let mut last = SystemClock.now();
    loop {
        let Some(next) = next_run(&cron, last.max(SystemClock.now()), zone) else {
            tracing::warn!(job = job.as_str(), cron = cron.expression, "the schedule has no next instant");
            return;
        };
        let wait = (next - SystemClock.now()).to_std().unwrap_or_default();
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        last = next;
        let span = tracing::info_span!("job", job = job.as_str());
        match jobs.run(job, Trigger::Schedule).instrument(span).await {
            Ok(JobOutcome::Ran(report)) => tracing::info!(
                job = job.as_str(),
                affected = report.affected,
                batches = report.batches,
                duration_ms = (report.finished_at - report.started_at).num_milliseconds(),
                "job ran"
            ),
            Ok(JobOutcome::Busy) => tracing::debug!(job = job.as_str(), "another scheduler holds the job"),
            Err(e) => tracing::error!(job = job.as_str(), error = %e, "job failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn cron(expression: &str) -> CronSchedule {
        CronSchedule { expression: expression.into(), schedule: expression.parse().expect("cron") }
    }

    #[test]
    fn crons_are_read_in_the_business_time_zone() {
        let after = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single().expect("instant");
        let midnight = cron("0 0 0 * * *");
        let seoul: Tz = "Asia/Seoul".parse().expect("zone");
        assert_eq!(
            next_run(&midnight, after, seoul),
            Utc.with_ymd_and_hms(2024, 1, 1, 15, 0, 0).single(),
            "midnight in Seoul is 15:00 UTC"
        );
        assert_eq!(next_run(&midnight, after, Tz::UTC), Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).single());
        let every_minute = cron("0 * * * * *");
        assert_eq!(next_run(&every_minute, after, seoul), Utc.with_ymd_and_hms(2024, 1, 1, 0, 1, 0).single());
    }
}
