//! `Inbox` on PostgreSQL: a partition's records applied exactly once (SPEC §3.3).
//!
//! One transaction per call. It first locks the partition's row of `consumer_offsets` and checks
//! that the offset is where the caller says it is; if not, another consumer took the partition
//! over and nothing happens (`Fenced`). Then, in record order: a record whose `eventId` is in
//! `processed_events` (one query for the batch) or earlier in the batch is a duplicate; otherwise
//! its effect runs in a savepoint (the same rules and statements as the HTTP endpoints; consecutive
//! confirmations of distinct reservations share one round), and a business refusal (unknown reservation, another order,
//! a late payment for a coupon that moved on) becomes a DLQ record in the outbox, so that it is
//! published like any event, at least once. Malformed records go to the DLQ without an effect.
//! Each record leaves its `processed_events` row (one insert for the batch), and the offset moves
//! past the last record. A
//! crash at any point rolls all of it back: no effect without its offset, no offset without its
//! effect.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use coupon_domain::consume::{
    Command, DeadLetter, Delivery, Inbox, InboxError, Intent, Outcome, Parsed, Refusal, Source,
};
use coupon_domain::event::{CouponEvent, EventContext, EventEncoder};
use coupon_domain::id::{PolicyId, UserId};
use coupon_domain::issue::{IssueCommand, IssueError};
use coupon_domain::policy::{DistributionType, Policy};
use coupon_domain::port::{PortFuture, StoreError};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::error::{Abort, from_diesel, from_pool};
use crate::issue::{count_issue, take_slot};
use crate::outbox;
use crate::pool::PgPool;
use crate::reservation::{ATTEMPTS, cancel_order, release};
use crate::reservation::{ConfirmWork, Work};
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
}

/// Why the transaction (or an effect's savepoint) stopped.
enum Stop {
    Fenced,
    /// The effect was refused after it had written (a coupon over the cap): roll its savepoint
    /// back, then send the record to the DLQ.
    Refused(Effect),
    /// The coupon moved under the effect: roll its savepoint back and run it again.
    Again,
    Db(diesel::result::Error),
    Store(StoreError),
}

impl From<diesel::result::Error> for Stop {
    fn from(e: diesel::result::Error) -> Self {
        Stop::Db(e)
    }
}

/// How one effect ended: applied (or nothing to do), or refused with a DLQ reason.
enum Effect {
    Applied,
    Refused(Refusal),
}

impl Effect {
    /// A refusal of the domain, or the store error it was.
    fn of(refusal: Result<Refusal, StoreError>) -> Result<Self, Stop> {
        refusal.map(Effect::Refused).map_err(Stop::Store)
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
            let effects = Effects { encoder: &*self.encoder, zone: self.zone };
            let result = conn
                .transaction::<_, Stop, _>(async |conn| {
                    apply(conn, &effects, source, from, deliveries, now).await
                })
                .await;
            match result {
                Ok(outcomes) => Ok(outcomes),
                Err(Stop::Fenced) => Err(InboxError::Fenced),
                Err(Stop::Db(e)) => Err(from_diesel(e).into()),
                Err(Stop::Store(e)) => Err(e.into()),
                Err(Stop::Again | Stop::Refused(_)) => {
                    Err(StoreError::Unexpected(anyhow::anyhow!("an effect escaped its savepoint")).into())
                }
            }
        })
    }
}

/// What the effects need besides the connection.
struct Effects<'a> {
    encoder: &'a dyn EventEncoder,
    zone: Tz,
}

async fn apply(
    conn: &mut AsyncPgConnection,
    effects: &Effects<'_>,
    source: &Source,
    from: i64,
    deliveries: &[Delivery],
    now: DateTime<Utc>,
) -> Result<Vec<Outcome>, Stop> {
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
    // Which eventIds were applied before, in one query; the batch adds its own as it goes, so a
    // record repeated inside the batch is a duplicate too.
    let ids: Vec<&str> =
        deliveries.iter().filter_map(|d| d.parsed.as_ref().ok()).map(|p| p.event_id.as_str()).collect();
    let mut seen: HashSet<String> = pe::table
        .filter(pe::topic.eq(&source.topic))
        .filter(pe::event_id.eq_any(&ids))
        .select(pe::event_id)
        .load::<String>(conn)
        .await?
        .into_iter()
        .collect();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; deliveries.len()];
    // Consecutive confirmations of distinct reservations are decided together, in one round.
    let mut run: Vec<usize> = Vec::new();
    let mut run_ids: HashSet<&str> = HashSet::new();
    for (index, delivery) in deliveries.iter().enumerate() {
        let parsed = match &delivery.parsed {
            Ok(parsed) if seen.insert(parsed.event_id.clone()) => parsed,
            Ok(_) => {
                outcomes[index] = Some(Outcome::Duplicate);
                continue;
            }
            Err(reason) => {
                // DLQ records keep the order of their records: the pending run goes first.
                confirm_run(conn, effects, source, deliveries, &run, &mut outcomes, now).await?;
                run.clear();
                run_ids.clear();
                let refusal = Refusal::new(reason);
                outcomes[index] = Some(dead_letter(conn, effects, source, delivery, refusal, now).await?);
                continue;
            }
        };
        if let Command::Confirm(request) = &parsed.command
            && run_ids.insert(request.reservation_id.as_str())
        {
            run.push(index);
            continue;
        }
        confirm_run(conn, effects, source, deliveries, &run, &mut outcomes, now).await?;
        run.clear();
        run_ids.clear();
        if let Command::Confirm(request) = &parsed.command {
            // The same reservation again: it starts the next run.
            run_ids.insert(request.reservation_id.as_str());
            run.push(index);
            continue;
        }
        outcomes[index] = Some(consume(conn, effects, source, delivery, parsed, now).await?);
    }
    confirm_run(conn, effects, source, deliveries, &run, &mut outcomes, now).await?;
    let outcomes: Vec<Outcome> = outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Nothing)).collect();
    record_processed(conn, source, deliveries, &outcomes).await?;
    let next = deliveries.last().map_or(from, |d| d.offset + 1);
    diesel::update(co::table.filter(co::topic.eq(&source.topic)).filter(co::partition.eq(source.partition)))
        .set((co::next_offset.eq(next), co::updated_at.eq(now)))
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

/// Confirms the records at `run` (distinct reservations) in shared rounds, in a savepoint; a
/// refusal goes to the DLQ, a coupon that moved goes again. If a round fails as a whole, the
/// records are done one by one instead.
async fn confirm_run(
    conn: &mut AsyncPgConnection,
    effects: &Effects<'_>,
    source: &Source,
    deliveries: &[Delivery],
    run: &[usize],
    outcomes: &mut [Option<Outcome>],
    now: DateTime<Utc>,
) -> Result<(), Stop> {
    let mut todo: Vec<(usize, ConfirmWork)> = run
        .iter()
        .filter_map(|&index| match &deliveries[index].parsed {
            Ok(Parsed { command: Command::Confirm(request), correlation_id, .. }) => Some((
                index,
                ConfirmWork {
                    request: request.clone(),
                    now,
                    context: EventContext { correlation_id: correlation_id.clone(), occurred_at: now },
                },
            )),
            _ => None,
        })
        .collect();
    for _ in 0..ATTEMPTS {
        if todo.is_empty() {
            return Ok(());
        }
        let works: Vec<&ConfirmWork> = todo.iter().map(|(_, w)| w).collect();
        let round = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| {
                ConfirmWork::round(conn, effects.encoder, &works).await
            })
            .await;
        drop(works);
        let Ok(answers) = round else { break };
        let mut again = Vec::new();
        for ((index, work), answer) in todo.into_iter().zip(answers) {
            match answer {
                None => again.push((index, work)),
                Some(Ok(_)) => outcomes[index] = Some(Outcome::Applied),
                Some(Err(e)) => match Effect::of(e.refusal())? {
                    Effect::Refused(refusal) => {
                        outcomes[index] =
                            Some(dead_letter(conn, effects, source, &deliveries[index], refusal, now).await?);
                    }
                    Effect::Applied => outcomes[index] = Some(Outcome::Applied),
                },
            }
        }
        todo = again;
    }
    // What is left (a round failed, or coupons kept moving): one by one, each with its retries.
    for (index, _) in todo {
        if let Ok(parsed) = &deliveries[index].parsed {
            outcomes[index] = Some(consume(conn, effects, source, &deliveries[index], parsed, now).await?);
        }
    }
    Ok(())
}

/// One parsed record, not seen before: effect (in a savepoint) and DLQ on refusal.
async fn consume(
    conn: &mut AsyncPgConnection,
    effects: &Effects<'_>,
    source: &Source,
    delivery: &Delivery,
    parsed: &Parsed,
    now: DateTime<Utc>,
) -> Result<Outcome, Stop> {
    let context = EventContext { correlation_id: parsed.correlation_id.clone(), occurred_at: now };
    for _ in 0..ATTEMPTS {
        let effect = conn
            .transaction::<_, Stop, _>(async |conn| {
                effect(conn, effects, &parsed.command, now, &context).await
            })
            .await;
        match effect {
            Ok(Effect::Applied) => return Ok(applied_or_nothing(&parsed.command)),
            Ok(Effect::Refused(refusal)) | Err(Stop::Refused(Effect::Refused(refusal))) => {
                return dead_letter(conn, effects, source, delivery, refusal, now).await;
            }
            Err(Stop::Again) => {}
            Err(e) => return Err(e),
        }
    }
    Err(Stop::Store(StoreError::Unexpected(anyhow::anyhow!(
        "{}: still changing after {ATTEMPTS} attempts",
        parsed.event_id
    ))))
}

fn applied_or_nothing(command: &Command) -> Outcome {
    match command {
        Command::Nothing => Outcome::Nothing,
        _ => Outcome::Applied,
    }
}

/// The command's effect, with the use cases' own statements.
async fn effect(
    conn: &mut AsyncPgConnection,
    effects: &Effects<'_>,
    command: &Command,
    now: DateTime<Utc>,
    context: &EventContext,
) -> Result<Effect, Stop> {
    let encoder = effects.encoder;
    match command.intent() {
        Intent::Issue { policy, user, channel } => {
            issue(conn, effects, policy, user, channel, now, context).await
        }
        Intent::Nothing => Ok(Effect::Applied),
        Intent::Confirm(request) => {
            let work = ConfirmWork { request: request.clone(), now, context: context.clone() };
            let outcomes = ConfirmWork::round(conn, encoder, &[&work]).await?;
            match outcomes.into_iter().next().flatten() {
                None => Err(Stop::Again),
                Some(Ok(_)) => Ok(Effect::Applied),
                Some(Err(e)) => Effect::of(e.refusal()),
            }
        }
        Intent::Release { reservation, by, reason } => {
            match release(conn, encoder, reservation, by, reason, now, context).await {
                Ok(_) => Ok(Effect::Applied),
                Err(Abort::Stale) => Err(Stop::Again),
                Err(Abort::Db(e)) => Err(Stop::Db(e)),
                Err(Abort::Refused(e)) => Effect::of(e.refusal()),
            }
        }
        Intent::CancelOrder { coupon, order } => {
            match cancel_order(conn, encoder, coupon, order, now, context).await {
                Ok(_) => Ok(Effect::Applied),
                Err(Abort::Stale) => Err(Stop::Again),
                Err(Abort::Db(e)) => Err(Stop::Db(e)),
                Err(Abort::Refused(e)) => Effect::of(e.refusal()),
            }
        }
    }
}

/// A coupon for `user` through `channel` (EVENT), as the issuing endpoints would issue it: the policy's rules,
/// the user's free slot, the `coupon.issued` event, the counter under its cap.
async fn issue(
    conn: &mut AsyncPgConnection,
    effects: &Effects<'_>,
    policy: PolicyId,
    user: UserId,
    channel: DistributionType,
    now: DateTime<Utc>,
    context: &EventContext,
) -> Result<Effect, Stop> {
    let row: Option<PolicyRow> =
        p::table.find(policy.get()).select(PolicyRow::as_select()).first(conn).await.optional()?;
    let Some(row) = row else {
        return Effect::of(IssueError::PolicyNotFound.refusal());
    };
    let policy = Policy::try_from(row).map_err(Stop::Store)?;
    let command = match IssueCommand::plan(&policy, channel, user, now, effects.zone, context) {
        Ok(command) => command,
        Err(reason) => return Ok(Effect::Refused(reason.refusal())),
    };
    let refused = |e: IssueError| Effect::of(e.refusal());
    // A refusal after the slot was taken must undo it: fail the savepoint, then answer.
    let coupon = match take_slot(conn, &command).await {
        Ok(coupon) => coupon,
        Err(Abort::Refused(e)) => return refused(e),
        Err(Abort::Stale) => return Err(Stop::Again),
        Err(Abort::Db(e)) => return Err(Stop::Db(e)),
    };
    let event = effects
        .encoder
        .encode(&CouponEvent::Issued { coupon: &coupon, policy: &policy }, context)
        .map_err(|e| Stop::Store(StoreError::Unexpected(e)))?;
    outbox::append(conn, &event).await?;
    match count_issue(conn, &command).await {
        Ok(()) => {
            metrics::counter!("coupon_issued_total", "issue_type" => "EVENT").increment(1);
            Ok(Effect::Applied)
        }
        Err(Abort::Refused(e)) => Err(Stop::Refused(refused(e)?)),
        Err(Abort::Stale) => Err(Stop::Again),
        Err(Abort::Db(e)) => Err(Stop::Db(e)),
    }
}

/// Appends the record with its reason and origin to the outbox, for `{topic}.DLQ`.
async fn dead_letter(
    conn: &mut AsyncPgConnection,
    effects: &Effects<'_>,
    source: &Source,
    delivery: &Delivery,
    refusal: Refusal,
    now: DateTime<Utc>,
) -> Result<Outcome, Stop> {
    let letter = DeadLetter { source, delivery, refusal: &refusal, failed_at: now };
    let event = effects.encoder.dead_letter(&letter).map_err(|e| Stop::Store(StoreError::Unexpected(e)))?;
    outbox::append(conn, &event).await?;
    if refusal.code() == Refusal::LATE_PAYMENT {
        metrics::counter!("coupon_late_confirmations_total", "outcome" => "refused").increment(1);
    }
    let code = refusal.code().to_owned();
    metrics::counter!("coupon_consumer_dead_letters_total", "topic" => source.topic.clone(), "reason" => code)
        .increment(1);
    Ok(Outcome::DeadLettered(refusal.reason))
}
