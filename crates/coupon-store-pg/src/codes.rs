//! `CodeStore` on PostgreSQL: unique codes and their generation jobs (SPEC §11.6).
//!
//! A chunk of codes is one statement: the codes no policy has yet are inserted (`ON CONFLICT DO
//! NOTHING` on the primary key, and none equal to a shared code), and the job's progress moves by
//! exactly the rows inserted, guarded by the progress the runner read. Of two runners of one job
//! (one whose lease lapsed, one that took it over), a chunk of the slower one commits nothing, so
//! a job never passes its total and no code is left outside its count.

use chrono::{DateTime, Utc};
use coupon_domain::codes::{CodeFormat, CodeJob, CodeRecord, CodeStore, JobState};
use coupon_domain::id::{PolicyId, UserId};
use coupon_domain::idempotency::Receipt;
use coupon_domain::port::{PortFuture, StoreError};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, SmallInt, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::error::{Abort, corrupt, from_diesel, from_pool};
use crate::idempotency::keyed;
use crate::policy::once;
use crate::pool::PgPool;
use crate::prepared::Prepared;

/// Unique codes in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgCodeStore {
    pool: PgPool,
}

impl PgCodeStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    async fn connection(&self) -> Result<crate::pool::PgConn, StoreError> {
        self.pool.get().await.map_err(from_pool)
    }
}

const JOB_COLUMNS: &str = "id, policy_id, total, generated, prefix, length, state";

#[derive(QueryableByName)]
struct JobRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    policy_id: i64,
    #[diesel(sql_type = Integer)]
    total: i32,
    #[diesel(sql_type = Integer)]
    generated: i32,
    #[diesel(sql_type = Text)]
    prefix: String,
    #[diesel(sql_type = SmallInt)]
    length: i16,
    #[diesel(sql_type = Text)]
    state: String,
}

impl TryFrom<JobRow> for CodeJob {
    type Error = StoreError;

    fn try_from(r: JobRow) -> Result<Self, StoreError> {
        let bad = |field: &str| corrupt("code_jobs", format!("id {} has an invalid {field}", r.id));
        Ok(CodeJob {
            id: r.id,
            policy: PolicyId::new(r.policy_id).ok_or_else(|| bad("policy_id"))?,
            total: u32::try_from(r.total).map_err(|_| bad("total"))?,
            generated: u32::try_from(r.generated).map_err(|_| bad("generated"))?,
            format: CodeFormat::new(Some(&r.prefix), Some(i64::from(r.length))).map_err(|_| bad("format"))?,
            state: JobState::parse(&r.state).ok_or_else(|| bad("state"))?,
        })
    }
}

fn jobs(rows: Vec<JobRow>) -> Result<Vec<CodeJob>, StoreError> {
    rows.into_iter().map(CodeJob::try_from).collect()
}

#[derive(QueryableByName)]
struct CodeRow {
    #[diesel(sql_type = Text)]
    code: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    coupon_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    user_id: Option<i64>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    redeemed_at: Option<DateTime<Utc>>,
}

/// One chunk: the codes inserted and the job's progress moved by their number, in one
/// transaction; nothing when the job moved on (another runner) or stopped running.
async fn insert_chunk(
    conn: &mut AsyncPgConnection,
    job: &CodeJob,
    codes: &[String],
    lease_until: DateTime<Utc>,
) -> QueryResult<JobRow> {
    let progressed: Option<JobRow> = Prepared::new(&format!(
        "WITH ins AS (INSERT INTO coupon_codes (code, policy_id) \
                      SELECT c, $2 FROM unnest($1::text[]) AS c \
                      WHERE NOT EXISTS (SELECT 1 FROM coupon_policies p WHERE p.coupon_code = c) \
                      ON CONFLICT (code) DO NOTHING RETURNING 1) \
         UPDATE code_jobs SET generated = generated + (SELECT count(*) FROM ins), lease_until = $5, updated_at = now() \
         WHERE id = $3 AND state = 'RUNNING' AND generated = $4 RETURNING {JOB_COLUMNS}"
    ))
    .bind::<Array<Text>, _>(codes.to_vec())
    .bind::<BigInt, _>(job.policy.get())
    .bind::<BigInt, _>(job.id)
    .bind::<Integer, _>(i32::try_from(job.generated).unwrap_or(i32::MAX))
    .bind::<Timestamptz, _>(lease_until)
    .get_result(conn)
    .await
    .optional()?;
    // None: the job moved on without us; commit nothing of this chunk.
    progressed.ok_or(diesel::result::Error::RollbackTransaction)
}

async fn read_job(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<JobRow>> {
    diesel::sql_query(format!("SELECT {JOB_COLUMNS} FROM code_jobs WHERE id = $1"))
        .bind::<BigInt, _>(id)
        .get_result(conn)
        .await
        .optional()
}

impl CodeStore for PgCodeStore {
    fn create_job<'a>(
        &'a self,
        policy: PolicyId,
        total: u32,
        format: &'a CodeFormat,
        (now, lease_until): (DateTime<Utc>, DateTime<Utc>),
        receipt: Option<&'a Receipt>,
    ) -> PortFuture<'a, Result<CodeJob, StoreError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let created = keyed(&mut conn, receipt, async |conn| {
                let row: JobRow = diesel::sql_query(format!(
                    "INSERT INTO code_jobs (policy_id, total, prefix, length, lease_until, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {JOB_COLUMNS}"
                ))
                .bind::<BigInt, _>(policy.get())
                .bind::<Integer, _>(i32::try_from(total).unwrap_or(i32::MAX))
                .bind::<Text, _>(format.prefix())
                .bind::<SmallInt, _>(i16::from(format.length()))
                .bind::<Timestamptz, _>(lease_until)
                .bind::<Timestamptz, _>(now)
                .get_result(conn)
                .await?;
                CodeJob::try_from(row).map_err(Abort::Refused)
            })
            .await;
            once(created)
        })
    }

    fn job(&self, policy: PolicyId, id: i64) -> PortFuture<'_, Result<Option<CodeJob>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let row = read_job(&mut conn, id).await.map_err(from_diesel)?;
            row.filter(|r| r.policy_id == policy.get()).map(CodeJob::try_from).transpose()
        })
    }

    fn jobs(&self, policy: PolicyId, limit: u32) -> PortFuture<'_, Result<Vec<CodeJob>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let rows: Vec<JobRow> = diesel::sql_query(format!(
                "SELECT {JOB_COLUMNS} FROM code_jobs WHERE policy_id = $1 ORDER BY id DESC LIMIT $2"
            ))
            .bind::<BigInt, _>(policy.get())
            .bind::<BigInt, _>(i64::from(limit))
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
            rows.into_iter().map(CodeJob::try_from).collect()
        })
    }

    fn insert_codes<'a>(
        &'a self,
        job: &'a CodeJob,
        codes: &'a [String],
        lease_until: DateTime<Utc>,
    ) -> PortFuture<'a, Result<CodeJob, StoreError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let chunk = conn
                .transaction::<_, diesel::result::Error, _>(async |conn| {
                    insert_chunk(conn, job, codes, lease_until).await
                })
                .await;
            let row = match chunk {
                Ok(row) => {
                    let added =
                        u64::try_from(row.generated).unwrap_or(0).saturating_sub(u64::from(job.generated));
                    metrics::counter!("coupon_unique_codes_generated_total").increment(added);
                    row
                }
                Err(diesel::result::Error::RollbackTransaction) => read_job(&mut conn, job.id)
                    .await
                    .map_err(from_diesel)?
                    .ok_or_else(|| corrupt("code_jobs", format!("job {} vanished", job.id)))?,
                Err(e) => return Err(from_diesel(e)),
            };
            CodeJob::try_from(row)
        })
    }

    fn finish_job<'a>(
        &'a self,
        id: i64,
        state: JobState,
        error: Option<&'a str>,
        now: DateTime<Utc>,
    ) -> PortFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let error: Option<String> = error.map(|e| e.chars().take(500).collect());
            diesel::sql_query(
                "UPDATE code_jobs SET state = $2, error = $3, updated_at = $4 WHERE id = $1 AND state = 'RUNNING'",
            )
            .bind::<BigInt, _>(id)
            .bind::<Text, _>(state.as_str())
            .bind::<Nullable<Text>, _>(error)
            .bind::<Timestamptz, _>(now)
            .execute(&mut conn)
            .await
            .map_err(from_diesel)?;
            metrics::counter!("coupon_code_jobs_total", "state" => state.as_str()).increment(1);
            Ok(())
        })
    }

    fn claim_stalled(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> PortFuture<'_, Result<Vec<CodeJob>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let rows: Vec<JobRow> = diesel::sql_query(format!(
                "UPDATE code_jobs SET lease_until = $2, updated_at = $1 \
                 WHERE id IN (SELECT id FROM code_jobs WHERE state = 'RUNNING' AND lease_until < $1 \
                              ORDER BY lease_until LIMIT 10 FOR UPDATE SKIP LOCKED) \
                 RETURNING {JOB_COLUMNS}"
            ))
            .bind::<Timestamptz, _>(now)
            .bind::<Timestamptz, _>(lease_until)
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
            jobs(rows)
        })
    }

    fn export_page<'a>(
        &'a self,
        policy: PolicyId,
        after: Option<&'a str>,
        limit: u32,
    ) -> PortFuture<'a, Result<Vec<CodeRecord>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            // Keyset over the primary key: each page starts where the last ended, so an export
            // of a million codes reads each index entry once and holds one page in memory.
            let rows: Vec<CodeRow> = Prepared::new(
                "SELECT code, status, coupon_id, user_id, redeemed_at FROM coupon_codes \
                 WHERE code > $2 AND policy_id = $1 ORDER BY code LIMIT $3",
            )
            .bind::<BigInt, _>(policy.get())
            .bind::<Text, _>(after.unwrap_or_default().to_owned())
            .bind::<BigInt, _>(i64::from(limit))
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
            rows.into_iter()
                .map(|r| {
                    let user_id = r
                        .user_id
                        .map(|u| UserId::new(u).ok_or_else(|| corrupt("coupon_codes", &r.code)))
                        .transpose()?;
                    Ok(CodeRecord {
                        redeemed: r.status == "REDEEMED",
                        coupon_id: r.coupon_id,
                        user_id,
                        redeemed_at: r.redeemed_at,
                        code: r.code,
                    })
                })
                .collect()
        })
    }
}
