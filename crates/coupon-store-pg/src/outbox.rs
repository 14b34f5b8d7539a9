//! The transactional outbox (SPEC §3.2): events are appended by the transaction that makes the
//! change they describe, so there is no event for a rolled-back change and no change without its
//! event. The relay in event-worker publishes and prunes them.

use coupon_domain::event::EncodedEvent;
use diesel::sql_types::{Array, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::prepared::Prepared;

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

