//! `Inbox` on PostgreSQL: a partition's records applied exactly once (SPEC §3.3).
//!
//! One transaction per call. It first locks the partition's row of `consumer_offsets` and checks
//! that the offset is where the caller says it is; if not, another consumer took the partition
//! over and nothing happens (`Fenced`). Then the domain's [`apply_records`] decides what each
//! record does, through [`PgEffects`]: each effect runs in a savepoint (the same statements as the
//! HTTP endpoints), started again after a concurrent change, and a DLQ record is an outbox row, so
//! that it is published like any event, at least once. Each record leaves its `processed_events`
//! row (one insert for the batch), and the offset moves past the last record. A crash at any point
//! rolls all of it back: no effect without its offset, no offset without its effect.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use coupon_domain::consume::{
    Confirmation, DeadLetter, Delivery, Inbox, InboxError, Outcome, RecordEffects, Records, Refusal, Source,
    apply_records,
};
use coupon_domain::event::{CouponEvent, EventContext, EventEncoder};
use coupon_domain::id::{CouponId, PolicyId};
use coupon_domain::issue::{IssueCommand, IssueError};
use coupon_domain::policy::Policy;
use coupon_domain::port::{PortFuture, StoreError};
use coupon_domain::reservation::{
    CancelReason, ConfirmError, ExternalRef, ReleaseError, ReleasedBy, ReservationId, RestoreError,
};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::error::{Abort, from_diesel, from_pool, lost_race};
use crate::issue::{count_issue, take_slot};
use crate::lanes::MAX_BATCH;
use crate::outbox;
use crate::pool::PgPool;
use crate::prepared::Prepared;
use crate::reservation::{ATTEMPTS, ConfirmWork, Work, cancel_order, gave_up, release, settle};
use crate::row::PolicyRow;
use crate::schema::{consumer_offsets as co, coupon_policies as p, processed_events as pe};

/// Consumed events in PostgreSQL.
#[derive(Clone)]
pub struct PgInbox {
    pool: PgPool,
    encoder: Arc<dyn EventEncoder>,
    /// Business time zone: an EVENT coupon expires at the end of its last day there.
    zone: Tz,
}

impl std::fmt::Debug for PgInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgInbox").field("pool", &self.pool).finish_non_exhaustive()
    }
}

impl PgInbox {
    pub fn new(pool: PgPool, encoder: Arc<dyn EventEncoder>, zone: Tz) -> Self {
        Self { pool, encoder, zone }
    }

    /// Forgets that the event `event_id` of `topic` was processed, so that the same record
    /// produced again (a DLQ replay) is applied rather than skipped as a duplicate. Returns
    /// whether a dedupe row was there.
    ///
    /// # Errors
    /// The store is unavailable.
    pub async fn forget(&self, topic: &str, event_id: &str) -> Result<bool, StoreError> {
        let mut conn = self.pool.get().await.map_err(from_pool)?;
        let deleted = diesel::delete(pe::table.filter(pe::topic.eq(topic)).filter(pe::event_id.eq(event_id)))
            .execute(&mut conn)
            .await
            .map_err(from_diesel)?;
        Ok(deleted > 0)
    }
}

/// Why the transaction stopped.
enum Stop {
    Fenced,
    Db(diesel::result::Error),
    Store(StoreError),
}

impl From<diesel::result::Error> for Stop {
    fn from(e: diesel::result::Error) -> Self {
        Stop::Db(e)
    }
}

impl Inbox for PgInbox {
    fn prune(&self, before: DateTime<Utc>, limit: u32) -> PortFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            // SKIP LOCKED: every worker pod prunes; they share the rows instead of waiting on
            // each other. Oldest first, through idx_processed_events_processed_at.
            let n = diesel::sql_query(
                "DELETE FROM processed_events WHERE (topic, event_id) IN \
                   (SELECT topic, event_id FROM processed_events WHERE processed_at < $1 \
                    ORDER BY processed_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind::<diesel::sql_types::Timestamptz, _>(before)
            .bind::<BigInt, _>(i64::from(limit))
            .execute(&mut conn)
            .await
            .map_err(from_diesel)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    fn next_offset<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
    ) -> PortFuture<'a, Result<Option<i64>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            co::table
                .filter(co::topic.eq(topic))
                .filter(co::partition.eq(partition))
                .select(co::next_offset)
                .first(&mut conn)
                .await
                .optional()
                .map_err(from_diesel)
        })
    }

    fn apply<'a>(
        &'a self,
        source: &'a Source,
        from: i64,
        deliveries: &'a [Delivery],
        now: DateTime<Utc>,
    ) -> PortFuture<'a, Result<Vec<Outcome>, InboxError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            let records = Records { source, deliveries, now, zone: self.zone };
            let result = conn
                .transaction::<_, Stop, _>(async |conn| apply(conn, &*self.encoder, records, from).await)
                .await;
            match result {
                Ok(outcomes) => Ok(outcomes),
                Err(Stop::Fenced) => Err(InboxError::Fenced),
                Err(Stop::Db(e)) => Err(from_diesel(e).into()),
                Err(Stop::Store(e)) => Err(e.into()),
            }
        })
    }
}

async fn apply(
    conn: &mut AsyncPgConnection,
    encoder: &dyn EventEncoder,
    records: Records<'_>,
    from: i64,
) -> Result<Vec<Outcome>, Stop> {
    let source = records.source;
    // Create the row at offset 0 the first time, then lock it: consumers of one partition queue
    // here, and a consumer whose offset is stale is turned away.
    diesel::insert_into(co::table)
        .values((co::topic.eq(&source.topic), co::partition.eq(source.partition), co::next_offset.eq(0)))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    let current: i64 = co::table
        .filter(co::topic.eq(&source.topic))
        .filter(co::partition.eq(source.partition))
        .select(co::next_offset)
        .for_update()
        .first(conn)
        .await?;
    if current != from {
        return Err(Stop::Fenced);
    }
    let mut effects = PgEffects { conn: &mut *conn, encoder };
    let outcomes = apply_records(&mut effects, records).await.map_err(Stop::Store)?;
    record_processed(conn, source, records.deliveries, &outcomes).await?;
    let next = records.deliveries.last().map_or(from, |d| d.offset + 1);
    diesel::update(co::table.filter(co::topic.eq(&source.topic)).filter(co::partition.eq(source.partition)))
        .set((co::next_offset.eq(next), co::updated_at.eq(records.now)))
        .execute(conn)
        .await?;
    for outcome in &outcomes {
        metrics::counter!("coupon_consumer_records_total", "topic" => source.topic.clone(), "outcome" => outcome.label())
            .increment(1);
    }
    Ok(outcomes)
}

/// One `processed_events` row per parsed record that was not a duplicate, in one statement.
async fn record_processed(
    conn: &mut AsyncPgConnection,
    source: &Source,
    deliveries: &[Delivery],
    outcomes: &[Outcome],
) -> Result<(), Stop> {
    let rows: Vec<(&str, i64, &str)> = deliveries
        .iter()
        .zip(outcomes)
        .filter(|(_, outcome)| **outcome != Outcome::Duplicate)
        .filter_map(|(d, outcome)| {
            d.parsed.as_ref().ok().map(|p| (p.event_id.as_str(), d.offset, outcome.label()))
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "INSERT INTO processed_events (topic, event_id, partition, record_offset, outcome, processed_at) \
         SELECT $1, e.id, $2, e.record_offset, e.outcome, now() \
         FROM unnest($3::text[], $4::bigint[], $5::text[]) AS e(id, record_offset, outcome)",
    )
    .bind::<Text, _>(&source.topic)
    .bind::<Integer, _>(source.partition)
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.1).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|r| r.2).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// The effects of consumed records inside the inbox's transaction: each in a savepoint, so that
/// a refused one undoes only its own writes, and started again after a concurrent change.
struct PgEffects<'c> {
    conn: &'c mut AsyncPgConnection,
    encoder: &'c dyn EventEncoder,
}

impl RecordEffects for PgEffects<'_> {
    fn applied_before<'a>(
        &'a mut self,
        topic: &'a str,
        event_ids: &'a [&'a str],
    ) -> PortFuture<'a, Result<HashSet<String>, StoreError>> {
        #[derive(QueryableByName)]
        struct Seen {
            #[diesel(sql_type = Text)]
            event_id: String,
        }
        Box::pin(async move {
            // One lookup by primary key per event, whatever the statistics say: as `event_id =
            // ANY(…)`, a batch of 500 on a table last analyzed when nearly empty was planned as
            // a scan of every row of the topic (76 ms at 200,000 rows, against 1 ms).
            let seen: Vec<Seen> = Prepared::new(
                "SELECT p.event_id FROM unnest($2::text[]) AS e(id) \
                 CROSS JOIN LATERAL (SELECT event_id FROM processed_events \
                                     WHERE topic = $1 AND event_id = e.id LIMIT 1) p",
            )
            .bind::<Text, _>(topic)
            .bind::<Array<Text>, _>(event_ids)
            .load(self.conn)
            .await
            .map_err(from_diesel)?;
            Ok(seen.into_iter().map(|s| s.event_id).collect())
        })
    }

    /// Distinct reservations are confirmed in shared rounds (a round is one savepoint; the
    /// confirmations whose coupon moved join the next one). If a round fails as a whole, its
    /// confirmations go one by one. A round takes at most [`MAX_BATCH`], like the checkout's
    /// lanes: a fetch brings thousands of records, and PostgreSQL plans the reads and writes of a
    /// few thousand keys as scans of whole tables (see docs/BENCHMARKS.md).
    fn confirm<'a>(
        &'a mut self,
        confirmations: &'a [Confirmation<'a>],
        now: DateTime<Utc>,
    ) -> PortFuture<'a, Result<Vec<Result<(), ConfirmError>>, StoreError>> {
        Box::pin(async move {
            let works: Vec<ConfirmWork> = confirmations
                .iter()
                .map(|c| ConfirmWork { request: c.request.clone(), now, context: c.context.clone() })
                .collect();
            let mut answers: Vec<Option<Result<(), ConfirmError>>> = works.iter().map(|_| None).collect();
            let mut todo: Vec<usize> = (0..works.len()).collect();
            let mut one_by_one = Vec::new();
            let encoder = self.encoder;
            for _ in 0..ATTEMPTS {
                if todo.is_empty() {
                    break;
                }
                let mut again = Vec::new();
                for chunk in todo.chunks(MAX_BATCH) {
                    let round: Vec<&ConfirmWork> = chunk.iter().map(|&i| &works[i]).collect();
                    let outcomes = self
                        .conn
                        .transaction::<_, diesel::result::Error, _>(async |conn| {
                            ConfirmWork::round(conn, encoder, &round).await
                        })
                        .await;
                    let Ok(outcomes) = outcomes else {
                        one_by_one.extend_from_slice(chunk);
                        continue;
                    };
                    for (&index, outcome) in chunk.iter().zip(outcomes) {
                        match outcome {
                            None => again.push(index),
                            Some(answer) => answers[index] = Some(answer.map(drop)),
                        }
                    }
                }
                todo = again;
            }
            for index in one_by_one.into_iter().chain(todo) {
                answers[index] = Some(self.confirm_one(&works[index]).await);
            }
            Ok(answers.into_iter().map(|a| a.unwrap_or(Ok(()))).collect())
        })
    }

    fn release<'a>(
        &'a mut self,
        reservation: &'a ReservationId,
        by: ReleasedBy<'a>,
        reason: CancelReason,
        now: DateTime<Utc>,
        context: &'a EventContext,
    ) -> PortFuture<'a, Result<(), ReleaseError>> {
        Box::pin(async move {
            let encoder = self.encoder;
            settle!(
                "release",
                self.conn.transaction(async |conn| {
                    release(conn, encoder, reservation, by, reason, now, context).await.map(drop)
                })
            )
        })
    }

    fn cancel_order<'a>(
        &'a mut self,
        coupon: CouponId,
        order: &'a ExternalRef,
        now: DateTime<Utc>,
        context: &'a EventContext,
    ) -> PortFuture<'a, Result<(), RestoreError>> {
        Box::pin(async move {
            let encoder = self.encoder;
            settle!(
                "order cancellation",
                self.conn.transaction(async |conn| {
                    cancel_order(conn, encoder, coupon, order, now, context).await.map(drop)
                })
            )
        })
    }

    fn policy(&mut self, id: PolicyId) -> PortFuture<'_, Result<Option<Policy>, StoreError>> {
        Box::pin(async move {
            let row: Option<PolicyRow> = p::table
                .find(id.get())
                .select(PolicyRow::as_select())
                .first(self.conn)
                .await
                .optional()
                .map_err(from_diesel)?;
            row.map(Policy::try_from).transpose()
        })
    }

    /// As the issuing endpoints issue: the user's free slot, the `coupon.issued` event, the
    /// counter under its cap; a refusal after the slot was taken rolls the savepoint back.
    fn issue<'a>(&'a mut self, command: IssueCommand<'a>) -> PortFuture<'a, Result<(), IssueError>> {
        Box::pin(async move {
            let encoder = self.encoder;
            let issued: Result<(), IssueError> = settle!(
                "issue",
                self.conn.transaction(async |conn| {
                    let coupon = take_slot(conn, &command).await?;
                    let event = CouponEvent::Issued { coupon: &coupon, policy: command.policy };
                    let event = encoder
                        .encode(&event, command.context)
                        .map_err(|e| Abort::Refused(IssueError::Unexpected(e)))?;
                    outbox::append(conn, &event).await?;
                    count_issue(conn, &command).await
                })
            );
            if issued.is_ok() {
                metrics::counter!("coupon_issued_total", "issue_type" => "EVENT").increment(1);
            }
            issued
        })
    }

    fn dead_letter<'a>(&'a mut self, letter: DeadLetter<'a>) -> PortFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let event = self.encoder.dead_letter(&letter).map_err(StoreError::Unexpected)?;
            outbox::append(self.conn, &event).await.map_err(from_diesel)?;
            let code = letter.refusal.code();
            if code == Refusal::LATE_PAYMENT {
                metrics::counter!("coupon_late_confirmations_total", "outcome" => "refused").increment(1);
            }
            metrics::counter!(
                "coupon_consumer_dead_letters_total",
                "topic" => letter.source.topic.clone(),
                "reason" => code.to_owned()
            )
            .increment(1);
            Ok(())
        })
    }
}

impl PgEffects<'_> {
    /// One confirmation in its own savepoint, started again while its coupon keeps moving.
    async fn confirm_one(&mut self, work: &ConfirmWork) -> Result<(), ConfirmError> {
        let encoder = self.encoder;
        for _ in 0..ATTEMPTS {
            let outcome = match self
                .conn
                .transaction::<_, diesel::result::Error, _>(async |conn| {
                    ConfirmWork::round(conn, encoder, &[work]).await
                })
                .await
            {
                Ok(outcome) => outcome,
                // A late confirmation whose order slot or budget was taken since its read.
                Err(e) if lost_race(&e) => continue,
                Err(e) => return Err(ConfirmError::Store(from_diesel(e))),
            };
            if let Some(answer) = outcome.into_iter().next().flatten() {
                return answer.map(drop);
            }
        }
        Err(gave_up("confirm"))
    }
}
