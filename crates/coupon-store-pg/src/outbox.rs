//! The transactional outbox (SPEC §3.2): events are appended by the transaction that makes the
//! change they describe, so there is no event for a rolled-back change and no change without its
//! event. The relay in event-worker publishes and prunes them.

use chrono::{DateTime, Utc};
use coupon_domain::event::EncodedEvent;
use coupon_domain::port::{PortFuture, StoreError};
use coupon_domain::relay::{Backlog, Outbox, OutboxRecord};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Text, Timestamptz};
use diesel_async::methods::LoadQuery;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

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

type PendingRow = (i64, String, String, String, DateTime<Utc>);

/// The relay's read: the oldest `limit` unpublished rows. Built apart from its execution so that
/// the tests can EXPLAIN exactly what runs.
fn pending_query<'a>(
    limit: u32,
) -> impl LoadQuery<'a, AsyncPgConnection, PendingRow> + QueryFragment<Pg> + QueryId + Send + 'a {
    o::table.filter(o::published_at.is_null()).order(o::id.asc()).limit(i64::from(limit)).select((
        o::id,
        o::topic,
        o::event_key,
        o::payload,
        o::created_at,
    ))
}

/// Makes the rest of the transaction read the unpublished rows by walking
/// `idx_outbox_unpublished` in id order and stopping at the batch's size: the only plan whose
/// cost follows the batch, not the backlog. Left to the statistics, which see few unpublished
/// rows whenever the relay keeps up (and 0.5 % of the table, the planner's default, before any
/// ANALYZE), PostgreSQL collects every unpublished row with a bitmap scan and sorts them for the
/// first few: after an hour of Kafka down, each round of the catch-up would read the whole
/// backlog again. The settings are local to the transaction, so a pooler in transaction mode
/// (PgBouncer) passes them without leaking them to other clients.
async fn walk_in_order(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    diesel::sql_query(
        "SELECT set_config('enable_bitmapscan', 'off', true), set_config('enable_sort', 'off', true)",
    )
    .execute(conn)
    .await
    .map(|_| ())
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
            let rows: Vec<PendingRow> = conn
                .transaction(async |conn| {
                    walk_in_order(conn).await?;
                    pending_query(limit).load(conn).await
                })
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
            // The oldest `limit` rows by primary key, of which those published before `before`:
            // rows are published in id order (per partition), so the prunable ones come first,
            // and a call reads at most `limit` rows whatever the table holds.
            let n = diesel::sql_query(
                "DELETE FROM outbox WHERE id IN \
                   (SELECT id FROM (SELECT id, published_at FROM outbox ORDER BY id LIMIT $2) oldest \
                    WHERE published_at < $1)",
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

#[cfg(test)]
mod tests {
    //! The relay's read on a backlog the statistics know nothing of.

    use coupon_testkit::TestDatabase;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    use serde_json::Value;

    use crate::explain::{analyze, nodes, shape};

    /// The rows each scan of the relay's read took from its index or table, and the plan's shape.
    async fn scanned(conn: &mut AsyncPgConnection, limit: u32) -> (Vec<u64>, String) {
        let explained: Value = conn
            .transaction(async |conn| {
                super::walk_in_order(conn).await?;
                Ok::<_, diesel::result::Error>(analyze(conn, super::pending_query(limit)).await)
            })
            .await
            .expect("explain");
        let root = &explained[0]["Plan"];
        let scans = nodes(root)
            .into_iter()
            .filter(|n| n["Node Type"].as_str().is_some_and(|t| t.contains("Scan")))
            .map(|n| n["Actual Rows"].as_u64().unwrap_or(u64::MAX))
            .collect();
        (scans, shape(root))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_relay_round_reads_its_batch_not_the_backlog() {
        let db = TestDatabase::migrated().await;
        let mut conn = db.connect().await;
        // Analyzed while empty, as after a deployment; then Kafka goes away and 20,000 events wait,
        // behind 5,000 published ones.
        for sql in [
            "ANALYZE outbox",
            "INSERT INTO outbox (event_id, topic, event_key, event_type, payload, published_at) \
             SELECT gen_random_uuid(), 'coupon.issued', n::text, 'COUPON_ISSUED', repeat('x', 400), \
                    CASE WHEN n <= 5000 THEN now() END \
             FROM generate_series(1, 25000) n",
        ] {
            diesel::sql_query(sql).execute(&mut conn).await.expect("test data");
        }
        let (scans, text) = scanned(&mut conn, 1000).await;
        #[expect(clippy::print_stdout, reason = "the plan is this test's report")]
        {
            println!("pending(1000) with 20,000 waiting:\n{text}");
        }
        assert!(
            text.contains("idx_outbox_unpublished"),
            "the read walks the unpublished rows' index:\n{text}"
        );
        assert!(!scans.is_empty(), "no scan in:\n{text}");
        assert!(
            scans.iter().all(|&rows| rows <= 1000),
            "a round read more than its batch ({scans:?}):\n{text}"
        );
    }
}
