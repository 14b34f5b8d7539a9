//! The batches of the housekeeping jobs (SPEC §7) and the jobs' cluster-wide locks.
//!
//! Each batch is one transaction that claims its rows with `FOR UPDATE SKIP LOCKED`, so a batch
//! never waits behind a checkout that is holding a coupon right now: that coupon is simply left for
//! the next run. Coupon rows are always locked before reservation rows, in the order every other
//! writer uses (see [`crate::reservation`]).
//!
//! The job lock follows ShedLock: a row per job whose `locked_until` lies in the future while a
//! runner holds it, compared with the database's clock so pods with skewed clocks agree, and
//! lapsing on its own when the holder dies.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use coupon_domain::coupon::IssuedCoupon;
use coupon_domain::event::{CouponEvent, EncodedEvent, EventContext, EventEncoder};
use coupon_domain::id::PolicyId;
use coupon_domain::jobs::{Expiring, Housekeeping, JobLock, JobName, JobReport, JobRun, Trigger};
use coupon_domain::port::{PortFuture, StoreError};
use coupon_domain::reservation::{Changed, Reservation};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::QueryFragment;
use diesel::sql_types::{Array, BigInt, Date, Interval, Nullable, Text, Timestamptz};
use diesel_async::methods::LoadQuery;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::error::{from_diesel, from_pool};
use crate::outbox;
use crate::pool::PgPool;
use crate::reservation::LEAVE;
use crate::row::{CouponRow, ReservationRow};
use crate::schema::coupon_reservations;

/// The jobs' batches in PostgreSQL.
#[derive(Clone)]
pub struct PgHousekeeping {
    pool: PgPool,
    encoder: Arc<dyn EventEncoder>,
}

impl std::fmt::Debug for PgHousekeeping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgHousekeeping").field("pool", &self.pool).finish_non_exhaustive()
    }
}

/// Ends a batch's transaction: the database failed, or an event could not be encoded.
enum Failure {
    Db(diesel::result::Error),
    Store(StoreError),
}

impl From<diesel::result::Error> for Failure {
    fn from(e: diesel::result::Error) -> Self {
        Failure::Db(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Db(e) => from_diesel(e),
            Failure::Store(e) => e,
        }
    }
}

fn encode_all<'e>(
    encoder: &dyn EventEncoder,
    events: impl Iterator<Item = CouponEvent<'e>>,
    context: &EventContext,
) -> Result<Vec<EncodedEvent>, Failure> {
    events
        .map(|event| encoder.encode(&event, context).map_err(|e| Failure::Store(StoreError::Unexpected(e))))
        .collect()
}

fn count(rows: usize) -> u64 {
    u64::try_from(rows).unwrap_or(u64::MAX)
}

impl PgHousekeeping {
    pub fn new(pool: PgPool, encoder: Arc<dyn EventEncoder>) -> Self {
        Self { pool, encoder }
    }

    async fn connection(&self) -> Result<crate::pool::PgConn, StoreError> {
        self.pool.get().await.map_err(from_pool)
    }
}

async fn time_out(
    conn: &mut AsyncPgConnection,
    encoder: &dyn EventEncoder,
    now: DateTime<Utc>,
    batch: u32,
    context: &EventContext,
) -> Result<u64, Failure> {
    // The join also checks that the coupon is still held by the reservation: a coupon whose hold
    // was confirmed or released after this statement's snapshot drops out when its lock is taken.
    // Every writer of a reservation locks its coupon first, so the reservation holds still too.
    let rows: Vec<ReservationRow> = diesel::sql_query(
        "SELECT r.reservation_id, r.coupon_id, r.user_id, r.order_id, r.order_amount, r.discount_amount, \
                r.status, r.reserved_at, r.expires_at, r.payment_id, r.confirmed_at, r.late_confirmation, \
                r.cancelled_at, r.cancel_reason \
         FROM coupon_reservations r \
         JOIN coupon_issues c ON c.id = r.coupon_id AND c.reservation_id = r.reservation_id AND c.status = 'RESERVED' \
         WHERE r.status = 'PENDING' AND r.expires_at < $1 \
         ORDER BY r.expires_at LIMIT $2 FOR UPDATE OF c SKIP LOCKED",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<BigInt, _>(i64::from(batch))
    .load(conn)
    .await?;
    let timed_out: Vec<Changed> = rows
        .into_iter()
        .map(|row| Reservation::try_from(row).map(|reservation| reservation.time_out(now)))
        .collect::<Result<_, StoreError>>()?;
    if timed_out.is_empty() {
        return Ok(0);
    }
    let written: Counts = diesel::sql_query(format!(
        "WITH t AS (SELECT * FROM unnest($2::text[], $3::bigint[], $4::text[], $5::timestamptz[], $6::text[]) \
                    AS t(reservation_id, coupon_id, status, cancelled_at, cancel_reason)), \
              c AS (UPDATE coupon_issues SET status = 'ISSUED', reservation_id = NULL, reserved_at = NULL, \
                    order_id = NULL, discount_amount = NULL, \
                    version = version + 1, updated_at = $1 FROM t \
                    WHERE coupon_issues.id = t.coupon_id AND coupon_issues.reservation_id = t.reservation_id \
                      AND coupon_issues.status = 'RESERVED' RETURNING coupon_issues.id, coupon_issues.policy_id), \
              r AS (UPDATE coupon_reservations SET status = t.status, cancelled_at = t.cancelled_at, \
                    cancel_reason = t.cancel_reason, updated_at = $1 FROM t \
                    WHERE coupon_reservations.reservation_id = t.reservation_id \
                      AND coupon_reservations.status = 'PENDING' \
                    RETURNING coupon_reservations.reservation_id, coupon_reservations.coupon_id, \
                              coupon_reservations.discount_amount, coupon_reservations.order_id, \
                              coupon_reservations.order_exclusive), \
              b AS (UPDATE coupon_policies SET budget_used = coupon_policies.budget_used - s.total \
                    FROM (SELECT c.policy_id, sum(r.discount_amount) AS total FROM c JOIN r ON r.coupon_id = c.id \
                          GROUP BY c.policy_id) s \
                    WHERE coupon_policies.id = s.policy_id AND coupon_policies.budget_amount IS NOT NULL \
                    RETURNING coupon_policies.id){LEAVE} \
         SELECT (SELECT count(*) FROM c) AS coupons, (SELECT count(*) FROM r) AS reservations"
    ))
    .bind::<Timestamptz, _>(now)
    .bind::<Array<Text>, _>(timed_out.iter().map(|t| t.reservation.id.as_str()).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(timed_out.iter().map(|t| t.reservation.coupon_id.get()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(timed_out.iter().map(|t| t.reservation.status.as_str()).collect::<Vec<_>>())
    .bind::<Array<Nullable<Timestamptz>>, _>(timed_out.iter().map(|t| t.reservation.cancelled_at).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(
        timed_out.iter().map(|t| t.reservation.cancel_reason.as_deref()).collect::<Vec<_>>(),
    )
    .get_result(conn)
    .await?;
    let expected = i64::try_from(timed_out.len()).unwrap_or(i64::MAX);
    if written.coupons != expected || written.reservations != expected {
        // The rows were locked: anything else is a broken invariant, and the batch rolls back.
        return Err(Failure::Store(StoreError::Unexpected(anyhow::anyhow!(
            "timed out {expected} reservations but changed {} coupons and {} reservations",
            written.coupons,
            written.reservations
        ))));
    }
    let events = encode_all(encoder, timed_out.iter().map(Changed::event), context)?;
    outbox::append_all(conn, &events).await?;
    Ok(count(timed_out.len()))
}

/// How many coupons and reservations a statement changed.
#[derive(QueryableByName)]
struct Counts {
    #[diesel(sql_type = BigInt)]
    coupons: i64,
    #[diesel(sql_type = BigInt)]
    reservations: i64,
}

/// The columns of a coupon that the expiry reads.
const DUE_COLUMNS: &str = "id, policy_id, user_id, status, reservation_id, order_id, discount_amount, issued_at, \
                           expires_at, reserved_at, used_at";

/// ISSUED coupons past their date, oldest date first, skipping those a checkout holds locked
/// (through `idx_coupon_issues_available_expiry`).
fn past_date_query<'a>(
    now: DateTime<Utc>,
    batch: u32,
) -> impl LoadQuery<'a, AsyncPgConnection, CouponRow> + QueryFragment<Pg> + Send + 'a {
    diesel::sql_query(format!(
        "SELECT {DUE_COLUMNS} FROM coupon_issues WHERE status = 'ISSUED' AND expires_at < $1 \
         ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED"
    ))
    .bind::<Timestamptz, _>(now)
    .bind::<BigInt, _>(i64::from(batch))
}

/// A policy's ISSUED coupons in id order (through `idx_coupon_issues_policy_available`).
fn of_policy_query<'a>(
    policy: PolicyId,
    batch: u32,
) -> impl LoadQuery<'a, AsyncPgConnection, CouponRow> + QueryFragment<Pg> + Send + 'a {
    diesel::sql_query(format!(
        "SELECT {DUE_COLUMNS} FROM coupon_issues WHERE policy_id = $1 AND status = 'ISSUED' \
         ORDER BY id LIMIT $2 FOR UPDATE"
    ))
    .bind::<BigInt, _>(policy.get())
    .bind::<BigInt, _>(i64::from(batch))
}

async fn expire(
    conn: &mut AsyncPgConnection,
    encoder: &dyn EventEncoder,
    due: Expiring,
    now: DateTime<Utc>,
    batch: u32,
    context: &EventContext,
) -> Result<u64, Failure> {
    let rows: Vec<CouponRow> = match due {
        // The job leaves a coupon that a checkout holds locked right now to the next run.
        Expiring::PastDate => past_date_query(now, batch).load(conn).await?,
        // A deactivation must reach every coupon: it waits for a checkout's statement instead,
        // and finds the coupon RESERVED (left to its reservation) or ISSUED again.
        Expiring::OfPolicy(policy) => of_policy_query(policy, batch).load(conn).await?,
    };
    let expired: Vec<IssuedCoupon> = rows
        .into_iter()
        .map(|row| IssuedCoupon::try_from(row).map(IssuedCoupon::expire))
        .collect::<Result<_, StoreError>>()?;
    if expired.is_empty() {
        return Ok(0);
    }
    let changed = diesel::sql_query(
        "UPDATE coupon_issues SET status = t.status, version = version + 1, updated_at = $1 \
         FROM unnest($2::bigint[], $3::text[]) AS t(id, status) \
         WHERE coupon_issues.id = t.id AND coupon_issues.status = 'ISSUED'",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<Array<BigInt>, _>(expired.iter().map(|c| c.id.get()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(expired.iter().map(|c| c.status.as_str()).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    if changed != expired.len() {
        // The rows were locked: anything else is a broken invariant, and the batch rolls back.
        return Err(Failure::Store(StoreError::Unexpected(anyhow::anyhow!(
            "expired {} coupons but changed {changed}",
            expired.len()
        ))));
    }
    let reason = due.reason();
    let events =
        encode_all(encoder, expired.iter().map(|coupon| CouponEvent::Expired { coupon, reason }), context)?;
    outbox::append_all(conn, &events).await?;
    Ok(count(expired.len()))
}

/// Recomputes one business day's row from the source tables. Idempotent: the row is replaced.
async fn refresh_day(
    conn: &mut AsyncPgConnection,
    day: NaiveDate,
    zone: Tz,
) -> Result<(), diesel::result::Error> {
    diesel::sql_query(
        "WITH bounds AS (SELECT ($1::date)::timestamp AT TIME ZONE $2 AS s, \
                                ($1::date + 1)::timestamp AT TIME ZONE $2 AS e), \
              issued AS (SELECT extract(hour FROM i.issued_at AT TIME ZONE $2)::int AS h, count(*) AS n \
                         FROM coupon_issues i, bounds WHERE i.issued_at >= bounds.s AND i.issued_at < bounds.e \
                         GROUP BY 1), \
              used AS (SELECT extract(hour FROM i.used_at AT TIME ZONE $2)::int AS h, count(*) AS n \
                       FROM coupon_issues i, bounds WHERE i.used_at >= bounds.s AND i.used_at < bounds.e \
                       GROUP BY 1) \
         INSERT INTO daily_statistics (stat_date, total_issued, total_used, total_reserved, total_expired, \
                                       issue_by_hour, usage_by_hour, updated_at) \
         SELECT $1, \
                (SELECT COALESCE(sum(n), 0) FROM issued), \
                (SELECT COALESCE(sum(n), 0) FROM used), \
                (SELECT count(*) FROM coupon_reservations r, bounds \
                  WHERE r.reserved_at >= bounds.s AND r.reserved_at < bounds.e), \
                (SELECT count(*) FROM coupon_issues i, bounds \
                  WHERE i.status = 'EXPIRED' AND i.expires_at >= bounds.s AND i.expires_at < bounds.e), \
                (SELECT COALESCE(jsonb_object_agg(h::text, n), '{}'::jsonb) FROM issued), \
                (SELECT COALESCE(jsonb_object_agg(h::text, n), '{}'::jsonb) FROM used), \
                now() \
         ON CONFLICT (stat_date) DO UPDATE SET total_issued = EXCLUDED.total_issued, \
                total_used = EXCLUDED.total_used, total_reserved = EXCLUDED.total_reserved, \
                total_expired = EXCLUDED.total_expired, issue_by_hour = EXCLUDED.issue_by_hour, \
                usage_by_hour = EXCLUDED.usage_by_hour, updated_at = EXCLUDED.updated_at",
    )
    .bind::<Date, _>(day)
    .bind::<Text, _>(zone.name())
    .execute(conn)
    .await
    .map(|_| ())
}

impl Housekeeping for PgHousekeeping {
    fn time_out_reservations<'a>(
        &'a self,
        now: DateTime<Utc>,
        batch: u32,
        context: &'a EventContext,
    ) -> PortFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let encoder = &*self.encoder;
            let n = conn
                .transaction::<_, Failure, _>(async |conn| time_out(conn, encoder, now, batch, context).await)
                .await?;
            metrics::counter!("coupon_reservations_timed_out_total").increment(n);
            // A short batch is the run's last: count the open reservations once, for the
            // dashboard (cheap through the PENDING partial index).
            if n < u64::from(batch) {
                let pending: i64 = coupon_reservations::table
                    .filter(coupon_reservations::status.eq("PENDING"))
                    .count()
                    .get_result(&mut conn)
                    .await
                    .map_err(from_diesel)?;
                metrics::gauge!("coupon_reservations_pending").set(pending as f64);
            }
            Ok(n)
        })
    }

    fn expire_coupons<'a>(
        &'a self,
        due: Expiring,
        now: DateTime<Utc>,
        batch: u32,
        context: &'a EventContext,
    ) -> PortFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let encoder = &*self.encoder;
            let n = conn
                .transaction::<_, Failure, _>(async |conn| {
                    expire(conn, encoder, due, now, batch, context).await
                })
                .await?;
            metrics::counter!("coupon_coupons_expired_total").increment(n);
            Ok(n)
        })
    }

    fn refresh_statistics<'a>(
        &'a self,
        first: NaiveDate,
        last: NaiveDate,
        zone: Tz,
    ) -> PortFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let mut days = 0;
            for day in first.iter_days().take_while(|day| *day <= last) {
                refresh_day(&mut conn, day, zone).await.map_err(from_diesel)?;
                days += 1;
            }
            Ok(days)
        })
    }

    fn prune_idempotency_keys(&self, batch: u32) -> PortFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            crate::idempotency::prune(&mut conn, batch).await.map_err(from_diesel)
        })
    }
}

/// The jobs' locks and run history in PostgreSQL (`job_locks`, `job_runs`).
#[derive(Debug, Clone)]
pub struct PgJobLock {
    pool: PgPool,
}

impl PgJobLock {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// A `Duration` as a PostgreSQL interval (microseconds; saturating).
pub(crate) fn interval(d: Duration) -> diesel::data_types::PgInterval {
    diesel::data_types::PgInterval::from_microseconds(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl JobLock for PgJobLock {
    fn acquire<'a>(
        &'a self,
        job: JobName,
        holder: &'a str,
        lease: Duration,
    ) -> PortFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            let taken = diesel::sql_query(
                "INSERT INTO job_locks (job_name, locked_until, locked_at, locked_by) \
                 VALUES ($1, clock_timestamp() + $2, clock_timestamp(), $3) \
                 ON CONFLICT (job_name) DO UPDATE SET locked_until = EXCLUDED.locked_until, \
                     locked_at = EXCLUDED.locked_at, locked_by = EXCLUDED.locked_by \
                 WHERE job_locks.locked_until <= clock_timestamp()",
            )
            .bind::<Text, _>(job.as_str())
            .bind::<Interval, _>(interval(lease))
            .bind::<Text, _>(holder)
            .execute(&mut conn)
            .await
            .map_err(from_diesel)?;
            Ok(taken == 1)
        })
    }

    fn release<'a>(
        &'a self,
        holder: &'a str,
        report: &'a JobReport,
        error: Option<&'a str>,
        hold_at_least: Duration,
    ) -> PortFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let outcome = if error.is_some() { "FAILED" } else { "SUCCEEDED" };
            let job = report.job.as_str();
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            diesel::sql_query(
                "WITH run AS (INSERT INTO job_runs (job_name, runner, trigger, started_at, finished_at, affected, \
                                                    outcome, error) \
                              VALUES ($1, $2, $3, $4, $5, $6, $7, $8)) \
                 UPDATE job_locks SET locked_until = GREATEST(clock_timestamp(), locked_at + $9), \
                        last_finished_at = $5, last_outcome = $7 \
                 WHERE job_name = $1 AND locked_by = $2",
            )
            .bind::<Text, _>(job)
            .bind::<Text, _>(holder)
            .bind::<Text, _>(report.trigger.as_str())
            .bind::<Timestamptz, _>(report.started_at)
            .bind::<Timestamptz, _>(report.finished_at)
            .bind::<BigInt, _>(i64::try_from(report.affected).unwrap_or(i64::MAX))
            .bind::<Text, _>(outcome)
            .bind::<Nullable<Text>, _>(error)
            .bind::<Interval, _>(interval(hold_at_least))
            .execute(&mut conn)
            .await
            .map_err(from_diesel)?;
            let seconds = (report.finished_at - report.started_at).as_seconds_f64();
            metrics::counter!("coupon_job_runs_total", "job_name" => job, "outcome" => outcome).increment(1);
            metrics::histogram!("coupon_job_duration_seconds", "job_name" => job).record(seconds);
            metrics::counter!("coupon_job_affected_rows_total", "job_name" => job).increment(report.affected);
            if error.is_none() {
                let finished = report.finished_at.timestamp_millis() as f64 / 1000.0;
                metrics::gauge!("coupon_job_last_success_timestamp_seconds", "job_name" => job).set(finished);
            }
            Ok(())
        })
    }

    fn recent_runs(&self, job: JobName, limit: u32) -> PortFuture<'_, Result<Vec<JobRun>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            let rows: Vec<RunRow> = diesel::sql_query(
                "SELECT trigger, outcome, affected, started_at, finished_at FROM job_runs \
                 WHERE job_name = $1 ORDER BY started_at DESC LIMIT $2",
            )
            .bind::<Text, _>(job.as_str())
            .bind::<BigInt, _>(i64::from(limit))
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
            rows.into_iter()
                .map(|row| {
                    Ok(JobRun {
                        trigger: Trigger::parse(&row.trigger).ok_or_else(|| {
                            StoreError::Unexpected(anyhow::anyhow!("job run with trigger {:?}", row.trigger))
                        })?,
                        succeeded: row.outcome == "SUCCEEDED",
                        affected: u64::try_from(row.affected).unwrap_or(0),
                        started_at: row.started_at,
                        finished_at: row.finished_at,
                    })
                })
                .collect()
        })
    }
}

/// A row of `job_runs`, as the history reads it.
#[derive(diesel::QueryableByName)]
struct RunRow {
    #[diesel(sql_type = Text)]
    trigger: String,
    #[diesel(sql_type = Text)]
    outcome: String,
    #[diesel(sql_type = BigInt)]
    affected: i64,
    #[diesel(sql_type = Timestamptz)]
    started_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    finished_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    //! The reads that cover a whole policy or every coupon by date, EXPLAINed on 200,000 coupons
    //! of 100 policies: deactivation and expiry through the indexes of ISSUED coupons (which a
    //! reserve or a use does not write into), a policy's statistics through the per-user slot index
    //! and the cancelled coupons' index; none scans the table.

    use coupon_domain::clock::{Clock, SystemClock};
    use coupon_domain::id::PolicyId;
    use coupon_testkit::TestDatabase;
    use diesel_async::RunQueryDsl;
    use serde_json::Value;

    use crate::explain::{coupons_fixture, nodes, plan, shape};

    /// Asserts that `coupon_issues` is never scanned whole and is read only through `indexes`,
    /// each of them used.
    fn assert_reads(name: &str, explained: &Value, indexes: &[&str]) {
        let root = &explained[0]["Plan"];
        let text = shape(root);
        for node in nodes(root) {
            if node["Relation Name"] == "coupon_issues" {
                assert_ne!(node["Node Type"], "Seq Scan", "{name} scans every coupon:\n{text}");
            }
            if let Some(index) = node["Index Name"].as_str().filter(|i| i.contains("coupon_issues")) {
                assert!(indexes.contains(&index), "{name} reads coupons through {index}:\n{text}");
            }
        }
        for index in indexes {
            assert!(text.contains(index), "{name} does not use {index}:\n{text}");
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn policy_and_expiry_reads_use_the_indexes_of_available_coupons() {
        let db = TestDatabase::migrated().await;
        let mut conn = db.connect().await;
        let [policies, coupons] =
            coupons_fixture(100, 20_000, &["ISSUED", "RESERVED", "USED", "USED", "EXPIRED", "CANCELLED"]);
        for sql in [policies.as_str(), coupons.as_str(), "ANALYZE"] {
            diesel::sql_query(sql).execute(&mut conn).await.expect("test data");
        }
        let policy = PolicyId::new(42).expect("policy");
        let now = SystemClock.now();
        let explained = plan(&mut conn, crate::policy::statistics_query(policy, now)).await;
        assert_reads(
            "policy statistics",
            &explained,
            &["uq_coupon_issues_user_slot", "idx_coupon_issues_policy_cancelled"],
        );
        let explained = plan(&mut conn, super::of_policy_query(policy, 500)).await;
        assert_reads("deactivation", &explained, &["idx_coupon_issues_policy_available"]);
        let explained = plan(&mut conn, super::past_date_query(now, 500)).await;
        assert_reads("expiry", &explained, &["idx_coupon_issues_available_expiry"]);
    }
}
