//! The transactional outbox (SPEC §3.2): events are appended by the transaction that makes the
//! change they describe, so there is no event for a rolled-back change and no change without its
//! event. The relay in event-worker publishes and prunes them.

use chrono::{DateTime, Utc};
use coupon_domain::event::EncodedEvent;
use coupon_domain::port::{PortFuture, StoreError};
use coupon_domain::relay::{Backlog, Outbox, OutboxRecord};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::{from_diesel, from_pool};
use crate::pool::PgPool;
use crate::prepared::Prepared;
use crate::schema::outbox as o;

/// Appends `event` inside the caller's transaction.
///
/// # Errors
/// The insert failed (the caller's transaction then rolls back).
pub async fn append(conn: &mut AsyncPgConnection, event: &EncodedEvent) -> Result<(), diesel::result::Error> {
    diesel::sql_query(
        "INSERT INTO outbox (event_id, topic, event_key, event_type, payload) VALUES ($1::uuid, $2, $3, $4, $5)",
    )
    .bind::<Text, _>(&event.event_id)
    .bind::<Text, _>(&event.topic)
    .bind::<Text, _>(&event.key)
    .bind::<Text, _>(event.event_type)
    .bind::<Text, _>(&event.payload)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Appends several events in one statement, inside the caller's transaction.
///
/// # Errors
/// The insert failed (the caller's transaction then rolls back).
pub async fn append_all(
    conn: &mut AsyncPgConnection,
    events: &[EncodedEvent],
) -> Result<(), diesel::result::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let sql = insert_sql(1, "TRUE");
    bind_events(Prepared::new(&sql), events).execute(conn).await.map(|_| ())
}

/// The insert of [`append_all`] as SQL, for the end of a data-modifying statement: the events are
/// the five text arrays bound by [`bind_events`] at `$first` to `$first + 4`, and they are written
/// only when `condition` holds (e.g. `EXISTS (SELECT 1 FROM changed)`), so the events and the
/// change they describe land together or not at all.
pub(crate) fn insert_sql(first: usize, condition: &str) -> String {
    let [a, b, c, d, e] = [first, first + 1, first + 2, first + 3, first + 4];
    format!(
        "INSERT INTO outbox (event_id, topic, event_key, event_type, payload) \
         SELECT e.event_id::uuid, e.topic, e.event_key, e.event_type, e.payload \
         FROM unnest(${a}::text[], ${b}::text[], ${c}::text[], ${d}::text[], ${e}::text[]) \
              WITH ORDINALITY AS e(event_id, topic, event_key, event_type, payload, ord) \
         WHERE {condition} ORDER BY e.ord"
    )
}

/// Binds `events` for [`insert_sql`].
pub(crate) fn bind_events<'a>(query: Prepared<'a>, events: &[EncodedEvent]) -> Prepared<'a> {
    let column =
        |f: fn(&EncodedEvent) -> &str| events.iter().map(|e| f(e).to_owned()).collect::<Vec<String>>();
    query
        .bind::<Array<Text>, _>(column(|e| &e.event_id))
        .bind::<Array<Text>, _>(column(|e| &e.topic))
        .bind::<Array<Text>, _>(column(|e| &e.key))
        .bind::<Array<Text>, _>(column(|e| e.event_type))
        .bind::<Array<Text>, _>(column(|e| &e.payload))
}

/// Like [`insert_sql`] for a statement that changes several things at once: each event has an
/// owner (bound as a sixth text array at `$first + 5` by [`bind_owned_events`]) and is written only
/// if its owner is among `owners`, a subquery such as `SELECT reservation_id FROM r`.
pub(crate) fn insert_owned_sql(first: usize, owners: &str) -> String {
    let [a, b, c, d, e, f] = [first, first + 1, first + 2, first + 3, first + 4, first + 5];
    format!(
        "INSERT INTO outbox (event_id, topic, event_key, event_type, payload) \
         SELECT e.event_id::uuid, e.topic, e.event_key, e.event_type, e.payload \
         FROM unnest(${a}::text[], ${b}::text[], ${c}::text[], ${d}::text[], ${e}::text[], ${f}::text[]) \
              WITH ORDINALITY AS e(event_id, topic, event_key, event_type, payload, owner, ord) \
         WHERE e.owner IN ({owners}) ORDER BY e.ord"
    )
}

/// Binds `events` and their owners for [`insert_owned_sql`].
pub(crate) fn bind_owned_events<'a>(query: Prepared<'a>, events: &[(String, EncodedEvent)]) -> Prepared<'a> {
    let plain: Vec<EncodedEvent> = events.iter().map(|(_, e)| e.clone()).collect();
    let owners: Vec<String> = events.iter().map(|(owner, _)| owner.clone()).collect();
    bind_events(query, &plain).bind::<Array<Text>, _>(owners)
}

/// The outbox seen from the relay.
#[derive(Debug, Clone)]
pub struct PgOutbox {
    pool: PgPool,
}

impl PgOutbox {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

impl Outbox for PgOutbox {
    fn pending(&self, limit: u32) -> PortFuture<'_, Result<Vec<OutboxRecord>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            let rows: Vec<(i64, String, String, String, DateTime<Utc>)> = o::table
                .filter(o::published_at.is_null())
                .order(o::id.asc())
                .limit(i64::from(limit))
                .select((o::id, o::topic, o::event_key, o::payload, o::created_at))
                .load(&mut conn)
                .await
                .map_err(from_diesel)?;
            Ok(rows
                .into_iter()
                .map(|(id, topic, key, payload, created_at)| OutboxRecord {
                    id,
                    topic,
                    key,
                    payload,
                    created_at,
                })
                .collect())
        })
    }

    fn mark_published<'a>(
        &'a self,
        ids: &'a [i64],
        at: DateTime<Utc>,
    ) -> PortFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            diesel::update(o::table.filter(o::id.eq_any(ids)))
                .set((o::published_at.eq(at), o::attempts.eq(o::attempts + 1)))
                .execute(&mut conn)
                .await
                .map_err(from_diesel)?;
            Ok(())
        })
    }

    fn mark_failed<'a>(&'a self, ids: &'a [i64], error: &'a str) -> PortFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            diesel::update(o::table.filter(o::id.eq_any(ids)))
                .set((o::attempts.eq(o::attempts + 1), o::last_error.eq(error)))
                .execute(&mut conn)
                .await
                .map_err(from_diesel)?;
            Ok(())
        })
    }

    fn prune(&self, before: DateTime<Utc>, limit: u32) -> PortFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            let n = diesel::sql_query(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE published_at < $1 \
                                                 ORDER BY published_at LIMIT $2)",
            )
            .bind::<Timestamptz, _>(before)
            .bind::<BigInt, _>(i64::from(limit))
            .execute(&mut conn)
            .await
            .map_err(from_diesel)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    fn backlog(&self) -> PortFuture<'_, Result<Backlog, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            let (rows, oldest): (i64, Option<DateTime<Utc>>) = o::table
                .filter(o::published_at.is_null())
                .select((diesel::dsl::count_star(), diesel::dsl::min(o::created_at)))
                .first(&mut conn)
                .await
                .map_err(from_diesel)?;
            Ok(Backlog { rows: u64::try_from(rows).unwrap_or(0), oldest })
        })
    }
}
