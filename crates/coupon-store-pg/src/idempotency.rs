//! Idempotency keys in PostgreSQL (`idempotency_keys`, SPEC §11.1), timed by the database's clock.
//!
//! A claim is one statement for a fresh key; a key found taken is read under lock and the domain's
//! [`decide_claim`] says what it means. The transactions of the effects write their receipts with
//! [`write_receipts`], inside their own transaction, guarded by the claim token: a holder that
//! lost its claim to a takeover writes nothing and its transaction fails.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use coupon_batch::Call;

use coupon_domain::coupon::IssuedCoupon;
use coupon_domain::event::EventContext;
use coupon_domain::idempotency::{
    Answer, Claim, ClaimDecision, Claimed, Entry, Fingerprint, IdempotencyStore, KeyScope, Receipt,
    StoredKey, decide_claim,
};
use coupon_domain::issue::Issued;
use coupon_domain::policy::Policy;
use coupon_domain::port::{PortFuture, StoreError};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Binary, Bool, Integer, Nullable, SmallInt, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::error::{Abort, from_diesel, from_pool};
use crate::lanes::Lanes;
use crate::pool::PgPool;

/// Lanes of fresh claims, each inserting what waits in one statement.
const LANES: usize = 2;

/// A key to insert, for a caller waiting in a lane.
struct Fresh {
    scope: KeyScope,
    fingerprint: Fingerprint,
    lease: i64,
    ttl: i64,
}

/// `Some` claim when the key was new, `None` when it was taken (read it then).
type FreshJob = Call<Fresh, Result<Option<Claim>, StoreError>>;

/// Idempotency keys. The claims of fresh keys are inserted in batches, one statement and one
/// commit for what arrived meanwhile: one commit per request cost more CPU than the download
/// itself.
#[derive(Clone)]
pub struct PgIdempotency {
    pool: PgPool,
    fresh: Arc<Lanes<FreshJob>>,
}

impl std::fmt::Debug for PgIdempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgIdempotency").field("pool", &self.pool).finish_non_exhaustive()
    }
}

impl PgIdempotency {
    pub fn new(pool: PgPool) -> Self {
        let lanes_pool = pool.clone();
        let fresh = Lanes::new(None, LANES, move |jobs| {
            let pool = lanes_pool.clone();
            async move { insert_fresh(&pool, jobs).await }
        });
        Self { pool, fresh: Arc::new(fresh) }
    }

    /// Inserts the key if it is new, in a lane's batch.
    async fn insert(&self, fresh: Fresh) -> Result<Option<Claim>, StoreError> {
        let stopped = || StoreError::Unavailable("the idempotency lanes have stopped (shutting down)".into());
        let lane = (fresh.scope.caller.clone(), fresh.scope.key.clone());
        let (job, answer) = Call::new(fresh);
        if self.fresh.submit(lane, job).await.is_err() {
            return Err(stopped());
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

#[derive(QueryableByName)]
struct Inserted {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    caller: String,
    #[diesel(sql_type = Text)]
    method: String,
    #[diesel(sql_type = Text)]
    path: String,
    #[diesel(sql_type = Text)]
    idempotency_key: String,
}

/// One lane's batch: every waiting key in one `INSERT … ON CONFLICT DO NOTHING`. A key inserted
/// twice in the batch goes to its first caller; the others find it taken.
async fn insert_fresh(pool: &PgPool, jobs: Vec<FreshJob>) {
    // A caller that left claims nothing (its key would block retries until the lease lapsed).
    let jobs: Vec<FreshJob> = jobs.into_iter().filter(|job| !job.gone()).collect();
    if jobs.is_empty() {
        return;
    }
    metrics::histogram!("coupon_idempotency_claim_batch_size").record(jobs.len() as f64);
    let column = |f: fn(&Fresh) -> String| jobs.iter().map(|job| f(&job.item)).collect::<Vec<_>>();
    let inserted: Result<Vec<Inserted>, StoreError> = async {
        let mut conn = pool.get().await.map_err(from_pool)?;
        diesel::sql_query(
            "INSERT INTO idempotency_keys (caller, method, path, idempotency_key, request_hash, claim_token, \
                 leased_until, created_at, expires_at) \
             SELECT c, m, p, k, h, 1, clock_timestamp() + lease * interval '1 millisecond', clock_timestamp(), \
                    clock_timestamp() + ttl * interval '1 millisecond' \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::bigint[], $7::bigint[]) \
                  AS x(c, m, p, k, h, lease, ttl) \
             ON CONFLICT (caller, method, path, idempotency_key) DO NOTHING \
             RETURNING id, caller, method, path, idempotency_key",
        )
        .bind::<Array<Text>, _>(column(|f| f.scope.caller.clone()))
        .bind::<Array<Text>, _>(column(|f| f.scope.method.clone()))
        .bind::<Array<Text>, _>(column(|f| f.scope.path.clone()))
        .bind::<Array<Text>, _>(column(|f| f.scope.key.clone()))
        .bind::<Array<Binary>, _>(jobs.iter().map(|job| job.item.fingerprint.to_vec()).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(jobs.iter().map(|job| job.item.lease).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(jobs.iter().map(|job| job.item.ttl).collect::<Vec<_>>())
        .load(&mut conn)
        .await
        .map_err(from_diesel)
    }
    .await;
    let mut inserted: HashMap<(String, String, String, String), i64> = match inserted {
        Ok(rows) => {
            rows.into_iter().map(|r| ((r.caller, r.method, r.path, r.idempotency_key), r.id)).collect()
        }
        Err(e) => {
            // Nothing was claimed: every caller may retry (503).
            tracing::warn!(error = %e, claims = jobs.len(), "claiming idempotency keys failed");
            let message = format!("idempotency keys: {e}");
            for job in jobs {
                let _ = job.answer(Err(StoreError::Unavailable(message.clone())));
            }
            return;
        }
    };
    for job in jobs {
        let scope = &job.item.scope;
        let key = (scope.caller.clone(), scope.method.clone(), scope.path.clone(), scope.key.clone());
        let claim = inserted.remove(&key).map(|id| Claim { id, token: 1, parts: Vec::new() });
        let _ = job.answer(Ok(claim));
    }
}

#[derive(QueryableByName)]
struct ClaimRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    claim_token: i64,
    #[diesel(sql_type = Array<Binary>)]
    parts: Vec<Vec<u8>>,
}

impl From<ClaimRow> for Claim {
    fn from(row: ClaimRow) -> Self {
        Claim { id: row.id, token: row.claim_token, parts: row.parts }
    }
}

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Binary)]
    request_hash: Vec<u8>,
    #[diesel(sql_type = Timestamptz)]
    leased_until: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = Timestamptz)]
    expires_at: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = Nullable<SmallInt>)]
    answer_status: Option<i16>,
    #[diesel(sql_type = Nullable<Binary>)]
    answer_body: Option<Vec<u8>>,
    #[diesel(sql_type = Timestamptz)]
    now: chrono::DateTime<chrono::Utc>,
}

impl KeyRow {
    fn stored(&self) -> StoredKey {
        let mut fingerprint = [0; 32];
        if self.request_hash.len() == fingerprint.len() {
            fingerprint.copy_from_slice(&self.request_hash);
        }
        let answer = match (self.answer_status, &self.answer_body) {
            (Some(status), Some(body)) => {
                Some(Answer { status: u16::try_from(status).unwrap_or_default(), body: body.clone() })
            }
            _ => None,
        };
        StoredKey { fingerprint, leased_until: self.leased_until, expires_at: self.expires_at, answer }
    }
}

async fn claim_taken(
    conn: &mut AsyncPgConnection,
    scope: &KeyScope,
    fingerprint: &Fingerprint,
    lease: Duration,
    ttl: Duration,
) -> QueryResult<Option<Claimed>> {
    let found: Option<KeyRow> = diesel::sql_query(
        "SELECT id, request_hash, leased_until, expires_at, answer_status, answer_body, clock_timestamp() AS now \
         FROM idempotency_keys \
         WHERE caller = $1 AND method = $2 AND path = $3 AND idempotency_key = $4 FOR UPDATE",
    )
    .bind::<Text, _>(&scope.caller)
    .bind::<Text, _>(&scope.method)
    .bind::<Text, _>(&scope.path)
    .bind::<Text, _>(&scope.key)
    .get_result(conn)
    .await
    .optional()?;
    // Gone since the insert found it (pruned): the caller claims it afresh.
    let Some(row) = found else { return Ok(None) };
    let fresh = match decide_claim(&row.stored(), fingerprint, row.now) {
        ClaimDecision::Replay(answer) => return Ok(Some(Claimed::Replay(answer))),
        ClaimDecision::Reused => return Ok(Some(Claimed::Reused)),
        ClaimDecision::InProgress => return Ok(Some(Claimed::InProgress)),
        ClaimDecision::Resume => false,
        ClaimDecision::Restart => true,
    };
    // A takeover counts the token up; a restart also forgets the old request entirely.
    let claim: ClaimRow = diesel::sql_query(
        "UPDATE idempotency_keys SET claim_token = claim_token + 1, leased_until = clock_timestamp() + $2 * interval '1 millisecond', \
             request_hash = $3, \
             created_at = CASE WHEN $4 THEN clock_timestamp() ELSE created_at END, \
             expires_at = CASE WHEN $4 THEN clock_timestamp() + $5 * interval '1 millisecond' ELSE expires_at END, \
             parts = CASE WHEN $4 THEN '{}' ELSE parts END, \
             answer_status = NULL, answer_body = NULL, answered_at = NULL \
         WHERE id = $1 RETURNING id, claim_token, parts",
    )
    .bind::<BigInt, _>(row.id)
    .bind::<BigInt, _>(millis(lease))
    .bind::<Binary, _>(fingerprint.as_slice())
    .bind::<Bool, _>(fresh)
    .bind::<BigInt, _>(millis(ttl))
    .get_result(conn)
    .await?;
    Ok(Some(Claimed::Run(claim.into())))
}

impl IdempotencyStore for PgIdempotency {
    fn claim<'a>(
        &'a self,
        scope: &'a KeyScope,
        fingerprint: &'a Fingerprint,
        lease: Duration,
        ttl: Duration,
    ) -> PortFuture<'a, Result<Claimed, StoreError>> {
        Box::pin(async move {
            loop {
                let fresh = Fresh {
                    scope: scope.clone(),
                    fingerprint: *fingerprint,
                    lease: millis(lease),
                    ttl: millis(ttl),
                };
                if let Some(claim) = self.insert(fresh).await? {
                    return Ok(Claimed::Run(claim));
                }
                let mut conn = self.pool.get().await.map_err(from_pool)?;
                let taken = conn
                    .transaction::<_, diesel::result::Error, _>(async |conn| {
                        claim_taken(conn, scope, fingerprint, lease, ttl).await
                    })
                    .await
                    .map_err(from_diesel)?;
                if let Some(claimed) = taken {
                    return Ok(claimed);
                }
            }
        })
    }

    fn answer<'a>(&'a self, claim: &'a Claim, answer: &'a Answer) -> PortFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            diesel::sql_query(
                "UPDATE idempotency_keys SET answer_status = $3, answer_body = $4, answered_at = clock_timestamp() \
                 WHERE id = $1 AND claim_token = $2 AND answer_status IS NULL",
            )
            .bind::<BigInt, _>(claim.id)
            .bind::<BigInt, _>(claim.token)
            .bind::<SmallInt, _>(status(answer.status))
            .bind::<Binary, _>(&answer.body)
            .execute(&mut conn)
            .await
            .map_err(from_diesel)?;
            Ok(())
        })
    }

    fn release<'a>(&'a self, claim: &'a Claim) -> PortFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            // A request that committed parts keeps its key: the retry resumes from them.
            diesel::sql_query(
                "DELETE FROM idempotency_keys WHERE id = $1 AND claim_token = $2 AND answer_status IS NULL \
                   AND cardinality(parts) = 0",
            )
            .bind::<BigInt, _>(claim.id)
            .bind::<BigInt, _>(claim.token)
            .execute(&mut conn)
            .await
            .map_err(from_diesel)?;
            diesel::sql_query(
                "UPDATE idempotency_keys SET leased_until = clock_timestamp() \
                 WHERE id = $1 AND claim_token = $2 AND answer_status IS NULL",
            )
            .bind::<BigInt, _>(claim.id)
            .bind::<BigInt, _>(claim.token)
            .execute(&mut conn)
            .await
            .map_err(from_diesel)?;
            Ok(())
        })
    }
}

/// Deletes up to `limit` keys past their time to live, oldest first; returns how many.
pub(crate) async fn prune(conn: &mut AsyncPgConnection, limit: u32) -> QueryResult<u64> {
    let deleted = diesel::sql_query(
        "DELETE FROM idempotency_keys WHERE id IN ( \
           SELECT id FROM idempotency_keys WHERE expires_at <= clock_timestamp() \
           ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)",
    )
    .bind::<Integer, _>(i32::try_from(limit).unwrap_or(i32::MAX))
    .execute(conn)
    .await?;
    Ok(deleted as u64)
}

fn millis(period: Duration) -> i64 {
    i64::try_from(period.as_millis()).unwrap_or(i64::MAX)
}

fn status(status: u16) -> i16 {
    i16::try_from(status).unwrap_or(i16::MAX)
}

/// What a transaction writes for `effect`, if the request behind `context` carries a key.
pub(crate) fn receipt_for<'c>(context: &'c EventContext, effect: &dyn Any) -> Option<(&'c Receipt, Entry)> {
    entry_for(context.receipt.as_ref(), effect)
}

/// What a transaction that issued `coupon` writes, if the request behind `context` carries a key
/// (its effect is an [`Issued`], built only then).
pub(crate) fn issued_receipt<'c>(
    context: &'c EventContext,
    coupon: &IssuedCoupon,
    policy: &Policy,
) -> Option<(&'c Receipt, Entry)> {
    let receipt = context.receipt.as_ref()?;
    let issued = Issued { coupon: coupon.clone(), policy: policy.clone() };
    receipt.entry(&issued).map(|entry| (receipt, entry))
}

fn entry_for<'r>(receipt: Option<&'r Receipt>, effect: &dyn Any) -> Option<(&'r Receipt, Entry)> {
    let receipt = receipt?;
    receipt.entry(effect).map(|entry| (receipt, entry))
}

/// Writes receipts in the caller's transaction: answers and parts under their claims. Fails the
/// transaction (`RollbackTransaction`) when a claim was taken over meanwhile, so that its holder's
/// effect does not commit a second time.
pub(crate) async fn write_receipts(
    conn: &mut AsyncPgConnection,
    receipts: &[(&Receipt, Entry)],
) -> QueryResult<()> {
    if receipts.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(receipts.len());
    let mut tokens = Vec::with_capacity(receipts.len());
    let mut statuses = Vec::with_capacity(receipts.len());
    let mut bodies = Vec::with_capacity(receipts.len());
    for (receipt, entry) in receipts {
        ids.push(receipt.claim().id);
        tokens.push(receipt.claim().token);
        let (answer, body) = match entry {
            Entry::Answer(answer) => (Some(status(answer.status)), answer.body.as_slice()),
            Entry::Part(part) => (None, part.as_slice()),
        };
        statuses.push(answer);
        bodies.push(body);
    }
    let written = diesel::sql_query(
        "UPDATE idempotency_keys k SET \
             answer_status = COALESCE(y.status, k.answer_status), \
             answer_body = CASE WHEN y.status IS NULL THEN k.answer_body ELSE y.body END, \
             answered_at = CASE WHEN y.status IS NULL THEN k.answered_at ELSE clock_timestamp() END, \
             parts = CASE WHEN y.status IS NULL THEN array_append(k.parts, y.body) ELSE k.parts END \
         FROM unnest($1::bigint[], $2::bigint[], $3::smallint[], $4::bytea[]) AS y(id, token, status, body) \
         WHERE k.id = y.id AND k.claim_token = y.token AND k.answer_status IS NULL",
    )
    .bind::<Array<BigInt>, _>(ids)
    .bind::<Array<BigInt>, _>(tokens)
    .bind::<Array<Nullable<SmallInt>>, _>(statuses)
    .bind::<Array<Binary>, _>(bodies)
    .execute(conn)
    .await?;
    if written != receipts.len() {
        tracing::warn!(
            written,
            expected = receipts.len(),
            "an idempotency claim was taken over; rolling back"
        );
        return Err(diesel::result::Error::RollbackTransaction);
    }
    for (receipt, entry) in receipts {
        if matches!(entry, Entry::Answer(_)) {
            receipt.mark_answered();
        }
    }
    Ok(())
}

/// An async closure over a connection whose future is `Send` (what a transaction needs).
pub(crate) trait SendAsyncFn<A, R>:
    AsyncFnOnce(A) -> R + FnOnce(A) -> <Self as SendAsyncFn<A, R>>::Fut
{
    type Fut: Future<Output = R> + Send;
}

impl<F, A, Fut, R> SendAsyncFn<A, R> for F
where
    F: AsyncFnOnce(A) -> R + FnOnce(A) -> Fut,
    Fut: Future<Output = R> + Send,
{
    type Fut = Fut;
}

/// One attempt of a write: alone when the request carries no idempotency key, else in a
/// transaction that also writes the receipt of what it did.
pub(crate) async fn keyed<T, E, W>(
    conn: &mut AsyncPgConnection,
    receipt: Option<&Receipt>,
    write: W,
) -> Result<T, Abort<E>>
where
    T: Any + Send,
    E: Send,
    for<'r> W: SendAsyncFn<&'r mut AsyncPgConnection, Result<T, Abort<E>>> + Send,
{
    if receipt.is_none() {
        return write(conn).await;
    }
    conn.transaction(async |conn| {
        let done = write(conn).await?;
        write_receipts(conn, &Vec::from_iter(entry_for(receipt, &done))).await?;
        Ok(done)
    })
    .await
}
