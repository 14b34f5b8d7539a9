//! The transactional outbox (SPEC §3.2): events are appended by the transaction that makes the
//! change they describe, so there is no event for a rolled-back change and no change without its
//! event. The relay in event-worker publishes and prunes them.

use coupon_domain::event::EncodedEvent;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

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
