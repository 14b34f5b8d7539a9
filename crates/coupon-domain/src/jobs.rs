//! Housekeeping jobs of SPEC §7: reservation timeout, expiry and daily statistics.
//!
//! A job runs only while it holds its cluster-wide [`JobLock`], so two scheduler pods (or a pod
//! and an admin's `POST /api/admin/jobs/{name}/run`) never run the same job at once. The work is
//! done in bounded batches, each one transaction of the [`Housekeeping`] port; a run repeats
//! batches until one comes back short. Every batch is idempotent: what it changed no longer
//! matches its selection, so running a job twice changes nothing the second time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::clock::Clock;
use crate::context::Origin;
use crate::coupon::ExpiryReason;
use crate::event::EventContext;
use crate::id::PolicyId;
use crate::port::{PortFuture, StoreError};

/// The jobs, by their names in SPEC §7 and in `POST /api/admin/jobs/{name}/run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobName {
    ReservationTimeout,
    Expiry,
    Statistics,
}

impl JobName {
    pub const ALL: [JobName; 3] = [JobName::ReservationTimeout, JobName::Expiry, JobName::Statistics];

    pub fn as_str(self) -> &'static str {
        match self {
            JobName::ReservationTimeout => "reservation-timeout",
            JobName::Expiry => "expiry",
            JobName::Statistics => "statistics",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|job| job.as_str() == s)
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The job's cron expression.
    Schedule,
    /// An admin asked for it.
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "SCHEDULE",
            Trigger::Manual => "MANUAL",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Trigger::Schedule, Trigger::Manual].into_iter().find(|t| t.as_str() == s)
    }
}

/// A recorded run, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRun {
    pub trigger: Trigger,
    /// `false`: the run failed (its error stays in the store and the logs).
    pub succeeded: bool,
    pub affected: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// A finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    pub job: JobName,
    pub trigger: Trigger,
    /// Rows changed: reservations timed out, coupons expired, days refreshed.
    pub affected: u64,
    pub batches: u32,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// What a request to run a job came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Ran(JobReport),
    /// Another runner holds the job's lock; nothing was done here.
    Busy,
}

/// The cluster-wide lock of each job, held by one runner at a time and lapsing after `lease` if
/// its holder dies.
pub trait JobLock: Send + Sync + 'static {
    /// Takes the lock if nobody holds it. `false` when somebody does.
    fn acquire<'a>(
        &'a self,
        job: JobName,
        holder: &'a str,
        lease: Duration,
    ) -> PortFuture<'a, Result<bool, StoreError>>;
    /// Records the run (`error` set when it failed) and lets the lock go. A scheduled run keeps
    /// the lock until `hold_at_least` after it was taken, so a second pod whose cron tick for the
    /// same instant comes a little later does not run the job again.
    fn release<'a>(
        &'a self,
        holder: &'a str,
        report: &'a JobReport,
        error: Option<&'a str>,
        hold_at_least: Duration,
    ) -> PortFuture<'a, Result<(), StoreError>>;
    /// The latest `limit` runs of `job`, newest first.
    fn recent_runs(&self, job: JobName, limit: u32) -> PortFuture<'_, Result<Vec<JobRun>, StoreError>>;
}

/// Which ISSUED coupons an expiry batch takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiring {
    /// Past their date (the expiry job).
    PastDate,
    /// Every ISSUED coupon of a policy deactivated with `expireIssued=true` (SPEC §11.2).
    OfPolicy(PolicyId),
}

impl Expiring {
    /// What `coupon.expired` says.
    pub fn reason(self) -> ExpiryReason {
        match self {
            Expiring::PastDate => ExpiryReason::ValidityPeriod,
            Expiring::OfPolicy(_) => ExpiryReason::PolicyDeactivated,
        }
    }
}

/// The work of the jobs, one bounded batch per call, each batch one transaction.
pub trait Housekeeping: Send + Sync + 'static {
    /// PENDING reservations past their `expires_at` → EXPIRED, their coupons → ISSUED, each with
    /// `coupon.cancelled` (reason `RESERVATION_TIMEOUT`). Returns how many.
    fn time_out_reservations<'a>(
        &'a self,
        now: DateTime<Utc>,
        batch: u32,
        context: &'a EventContext,
    ) -> PortFuture<'a, Result<u64, StoreError>>;
    /// ISSUED coupons `due` → EXPIRED, each with `coupon.expired` and the reason of `due`.
    /// RESERVED coupons wait for their reservation to resolve. Returns how many.
    fn expire_coupons<'a>(
        &'a self,
        due: Expiring,
        now: DateTime<Utc>,
        batch: u32,
        context: &'a EventContext,
    ) -> PortFuture<'a, Result<u64, StoreError>>;
    /// Recomputes `daily_statistics` for each business day of `days` (totals and hourly buckets
    /// in `zone`) from the coupons and reservations. Returns how many days.
    fn refresh_statistics<'a>(
        &'a self,
        first: NaiveDate,
        last: NaiveDate,
        zone: Tz,
    ) -> PortFuture<'a, Result<u64, StoreError>>;
    /// Deletes up to `batch` idempotency keys past their time to live (SPEC §11.1). Returns how
    /// many.
    fn prune_idempotency_keys(&self, batch: u32) -> PortFuture<'_, Result<u64, StoreError>>;
}

/// How the jobs run.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// Rows per batch (SPEC §7: bounded, e.g. 500).
    pub batch_size: u32,
    /// How long a lock lasts if its holder dies mid-run.
    pub lease: Duration,
    /// How long a scheduled run keeps its lock at least (see [`JobLock::release`]).
    pub hold_at_least: Duration,
    /// The business time zone of daily statistics.
    pub zone: Tz,
}

/// Runs the jobs under their locks.
#[derive(Clone)]
pub struct Jobs {
    lock: Arc<dyn JobLock>,
    work: Arc<dyn Housekeeping>,
    clock: Arc<dyn Clock>,
    holder: String,
    settings: JobSettings,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("holder", &self.holder)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Jobs {
    /// `holder` names this runner in the lock table (pod name, process id).
    pub fn new(
        lock: Arc<dyn JobLock>,
        work: Arc<dyn Housekeeping>,
        clock: Arc<dyn Clock>,
        holder: String,
        settings: JobSettings,
    ) -> Self {
        Self { lock, work, clock, holder, settings }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Each job with its latest `limit` runs, newest first.
    ///
    /// # Errors
    /// The history cannot be read.
    pub async fn history(&self, limit: u32) -> Result<Vec<(JobName, Vec<JobRun>)>, StoreError> {
        let mut jobs = Vec::with_capacity(JobName::ALL.len());
        for job in JobName::ALL {
            jobs.push((job, self.lock.recent_runs(job, limit).await?));
        }
        Ok(jobs)
    }

    /// Expires every ISSUED coupon of `policy` (deactivated with `expireIssued=true`), batch by
    /// batch until one comes back short, with `coupon.expired` reason `POLICY_DEACTIVATED` from
    /// `metadata.source` `ADMIN`. Stopped midway (the caller gone), a second call goes on from
    /// where the first stopped. Returns how many.
    ///
    /// # Errors
    /// A batch failed; the batches before it stay committed.
    pub async fn expire_policy(&self, policy: PolicyId, correlation_id: String) -> Result<u64, StoreError> {
        let batch = self.settings.batch_size;
        let mut expired = 0;
        loop {
            let now = self.clock.now();
            let context =
                EventContext { origin: Origin::Admin, ..EventContext::new(correlation_id.clone(), now) };
            let n = self.work.expire_coupons(Expiring::OfPolicy(policy), now, batch, &context).await?;
            expired += n;
            if n < u64::from(batch) {
                return Ok(expired);
            }
        }
    }

    /// Runs `job` now if its lock is free.
    ///
    /// # Errors
    /// The lock could not be taken or released, or a batch failed. A failed run is recorded
    /// before the error is returned; batches committed before the failure stay committed.
    pub async fn run(&self, job: JobName, trigger: Trigger) -> Result<JobOutcome, StoreError> {
        if !self.lock.acquire(job, &self.holder, self.settings.lease).await? {
            return Ok(JobOutcome::Busy);
        }
        let started_at = self.clock.now();
        let mut report =
            JobReport { job, trigger, affected: 0, batches: 0, started_at, finished_at: started_at };
        let outcome = self.work(&mut report).await;
        report.finished_at = self.clock.now();
        let hold = match trigger {
            Trigger::Schedule => self.settings.hold_at_least,
            Trigger::Manual => Duration::ZERO,
        };
        let error = outcome.as_ref().err().map(|e| format!("{e:#}"));
        self.lock.release(&self.holder, &report, error.as_deref(), hold).await?;
        outcome.map(|()| JobOutcome::Ran(report))
    }

    /// The expiry job's second part: idempotency keys past their time to live, batch by batch
    /// (not counted in the run's `affected`, which counts coupons).
    async fn prune_keys(&self) -> Result<(), StoreError> {
        let batch = self.settings.batch_size;
        let mut pruned = 0;
        loop {
            let n = self.work.prune_idempotency_keys(batch).await?;
            pruned += n;
            if n < u64::from(batch) {
                tracing::debug!(pruned, "idempotency keys past their time to live deleted");
                return Ok(());
            }
        }
    }

    async fn work(&self, report: &mut JobReport) -> Result<(), StoreError> {
        let batch = self.settings.batch_size;
        let context = EventContext::new(
            format!("job:{}:{}", report.job.as_str(), report.started_at.timestamp_millis()),
            report.started_at,
        );
        loop {
            // Each batch judges expiry by the time it starts, so a long run keeps up with the clock.
            let now = self.clock.now();
            let changed = match report.job {
                JobName::ReservationTimeout => self.work.time_out_reservations(now, batch, &context).await?,
                JobName::Expiry => {
                    let expired = self.work.expire_coupons(Expiring::PastDate, now, batch, &context).await?;
                    if expired < u64::from(batch) {
                        self.prune_keys().await?;
                    }
                    expired
                }
                JobName::Statistics => {
                    // Today and yesterday: yesterday's last hour changes after midnight.
                    let today = now.with_timezone(&self.settings.zone).date_naive();
                    let yesterday = today.pred_opt().unwrap_or(today);
                    report.batches += 1;
                    report.affected +=
                        self.work.refresh_statistics(yesterday, today, self.settings.zone).await?;
                    return Ok(());
                }
            };
            report.batches += 1;
            report.affected += changed;
            if changed < u64::from(batch) {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::TimeZone;

    use super::*;
    use crate::fakes::{ManualClock, block_on};

    #[derive(Default)]
    struct Recorder {
        held: Mutex<Option<String>>,
        released: Mutex<Vec<(JobReport, Option<String>, Duration)>>,
        /// Rows waiting for the expiry job.
        due: Mutex<u64>,
        fail: bool,
    }

    impl JobLock for Recorder {
        fn acquire<'a>(
            &'a self,
            _: JobName,
            holder: &'a str,
            _: Duration,
        ) -> PortFuture<'a, Result<bool, StoreError>> {
            Box::pin(async move {
                let mut held = self.held.lock().unwrap_or_else(|e| panic!("{e}"));
                if held.is_some() {
                    return Ok(false);
                }
                *held = Some(holder.to_owned());
                Ok(true)
            })
        }

        fn release<'a>(
            &'a self,
            _: &'a str,
            report: &'a JobReport,
            error: Option<&'a str>,
            hold: Duration,
        ) -> PortFuture<'a, Result<(), StoreError>> {
            Box::pin(async move {
                *self.held.lock().unwrap_or_else(|e| panic!("{e}")) = None;
                self.released.lock().unwrap_or_else(|e| panic!("{e}")).push((
                    report.clone(),
                    error.map(str::to_owned),
                    hold,
                ));
                Ok(())
            })
        }

        fn recent_runs(&self, job: JobName, limit: u32) -> PortFuture<'_, Result<Vec<JobRun>, StoreError>> {
            Box::pin(async move {
                let released = self.released.lock().unwrap_or_else(|e| panic!("{e}"));
                Ok(released
                    .iter()
                    .rev()
                    .filter(|(report, ..)| report.job == job)
                    .take(limit as usize)
                    .map(|(report, error, _)| JobRun {
                        trigger: report.trigger,
                        succeeded: error.is_none(),
                        affected: report.affected,
                        started_at: report.started_at,
                        finished_at: report.finished_at,
                    })
                    .collect())
            })
        }
    }

    impl Housekeeping for Recorder {
        fn time_out_reservations<'a>(
            &'a self,
            _: DateTime<Utc>,
            _: u32,
            _: &'a EventContext,
        ) -> PortFuture<'a, Result<u64, StoreError>> {
            Box::pin(async move { Ok(0) })
        }

        fn expire_coupons<'a>(
            &'a self,
            _: Expiring,
            _: DateTime<Utc>,
            batch: u32,
            _: &'a EventContext,
        ) -> PortFuture<'a, Result<u64, StoreError>> {
            Box::pin(async move {
                if self.fail {
                    return Err(StoreError::Unavailable("down".into()));
                }
                let mut due = self.due.lock().unwrap_or_else(|e| panic!("{e}"));
                let taken = (*due).min(u64::from(batch));
                *due -= taken;
                Ok(taken)
            })
        }

        fn refresh_statistics<'a>(
            &'a self,
            first: NaiveDate,
            last: NaiveDate,
            _: Tz,
        ) -> PortFuture<'a, Result<u64, StoreError>> {
            Box::pin(async move { Ok(u64::try_from((last - first).num_days() + 1).unwrap_or(0)) })
        }

        fn prune_idempotency_keys(&self, _: u32) -> PortFuture<'_, Result<u64, StoreError>> {
            Box::pin(async move { Ok(0) })
        }
    }

    fn jobs(recorder: &Arc<Recorder>) -> Jobs {
        let clock = ManualClock::at(
            Utc.with_ymd_and_hms(2024, 2, 1, 0, 0, 0).single().unwrap_or_else(|| panic!("instant")),
        );
        Jobs::new(
            recorder.clone(),
            recorder.clone(),
            Arc::new(clock),
            "pod-a".into(),
            JobSettings {
                batch_size: 100,
                lease: Duration::from_secs(60),
                hold_at_least: Duration::from_millis(500),
                zone: Tz::UTC,
            },
        )
    }

    #[test]
    fn batches_repeat_until_one_comes_back_short() {
        let recorder = Arc::new(Recorder { due: Mutex::new(250), ..Recorder::default() });
        let outcome = block_on(jobs(&recorder).run(JobName::Expiry, Trigger::Schedule)).ok();
        let Some(JobOutcome::Ran(report)) = outcome else { panic!("expected a run, got {outcome:?}") };
        assert_eq!((report.affected, report.batches), (250, 3));
        let again = block_on(jobs(&recorder).run(JobName::Expiry, Trigger::Manual)).ok();
        let Some(JobOutcome::Ran(report)) = again else { panic!("expected a run, got {again:?}") };
        assert_eq!((report.affected, report.batches), (0, 1), "a second run changes nothing");
        let released = recorder.released.lock().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(released[0].2, Duration::from_millis(500), "a scheduled run holds its lock a little");
        assert_eq!(released[1].2, Duration::ZERO, "a manual run lets it go at once");
    }

    #[test]
    fn a_held_lock_means_busy_and_a_failed_run_is_recorded() {
        let recorder = Arc::new(Recorder { fail: true, ..Recorder::default() });
        *recorder.held.lock().unwrap_or_else(|e| panic!("{e}")) = Some("pod-b".into());
        assert_eq!(
            block_on(jobs(&recorder).run(JobName::Expiry, Trigger::Schedule)).ok(),
            Some(JobOutcome::Busy)
        );
        *recorder.held.lock().unwrap_or_else(|e| panic!("{e}")) = None;
        assert!(block_on(jobs(&recorder).run(JobName::Expiry, Trigger::Schedule)).is_err());
        let released = recorder.released.lock().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(released.len(), 1);
        assert!(released[0].1.as_deref().is_some_and(|e| e.contains("down")), "{released:?}");
        assert!(recorder.held.lock().unwrap_or_else(|e| panic!("{e}")).is_none(), "the lock is let go");
    }

    #[test]
    fn statistics_refresh_yesterday_and_today() {
        let recorder = Arc::new(Recorder::default());
        let outcome = block_on(jobs(&recorder).run(JobName::Statistics, Trigger::Manual)).ok();
        let Some(JobOutcome::Ran(report)) = outcome else { panic!("expected a run") };
        assert_eq!(report.affected, 2);
        assert_eq!(JobName::parse("reservation-timeout"), Some(JobName::ReservationTimeout));
        assert_eq!(JobName::parse("cleanup"), None);
    }
}
