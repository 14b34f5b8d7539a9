//! The outbox as the relay sees it, against the real PostgreSQL: oldest first, marks, failures,
//! backlog and pruning.

use coupon_domain::clock::{Clock, SystemClock};
use std::time::Duration;

use coupon_domain::event::EncodedEvent;
use coupon_domain::relay::Outbox;
use coupon_store_pg::outbox::{PgOutbox, append_all};
use coupon_store_pg::pool::{PgConfig, PgPool};
use coupon_store_pg::tls::PgTls;
use coupon_testkit::TestDatabase;

fn event(n: u32) -> EncodedEvent {
    EncodedEvent {
        event_id: format!("00000000-0000-4000-8000-{n:012}"),
        topic: "coupon.issued".into(),
        key: (n % 3).to_string(),
        event_type: "COUPON_ISSUED",
        payload: format!("{{\"n\":{n}}}"),
    }
}

/// A fresh database whose outbox holds ten events, and the relay's view of it.
async fn outbox_with_ten_events() -> (TestDatabase, PgOutbox) {
    let db = TestDatabase::migrated().await;
    let mut conn = db.connect().await;
    append_all(&mut conn, &(1..=10).map(event).collect::<Vec<_>>()).await.expect("append");
    let pool = PgPool::new(&PgConfig {
        connection_string: db.connection_string(),
        max_size: 2,
        timeout: Duration::from_secs(10),
        tls: PgTls::default(),
    })
    .expect("pool");
    (db, PgOutbox::new(pool))
}

#[tokio::test]
async fn the_relay_reads_oldest_first_marks_and_prunes() {
    let (_db, outbox) = outbox_with_ten_events().await;

    let backlog = outbox.backlog().await.expect("backlog");
    assert_eq!(backlog.rows, 10);
    assert!(backlog.oldest.is_some());
    let first = outbox.pending(4).await.expect("pending");
    let payloads: Vec<&str> = first.iter().map(|r| r.payload.as_str()).collect();
    assert_eq!(
        payloads,
        [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#, r#"{"n":4}"#],
        "oldest first, byte for byte"
    );
    assert_eq!(first[0].key, "1");

    let ids: Vec<i64> = first.iter().map(|r| r.id).collect();
    outbox.mark_failed(&ids[2..], "broker down").await.expect("failed");
    outbox
        .mark_published(&ids[..2], SystemClock.now() - chrono::Duration::hours(2))
        .await
        .expect("published");
    let next = outbox.pending(4).await.expect("pending");
    assert_eq!(next[0].id, ids[2], "a failed row is still the oldest unpublished one");
    assert_eq!(outbox.backlog().await.expect("backlog").rows, 8);

    assert_eq!(outbox.prune(SystemClock.now() - chrono::Duration::hours(1), 100).await.expect("prune"), 2);
    assert_eq!(
        outbox.prune(SystemClock.now(), 100).await.expect("prune"),
        0,
        "unpublished rows are never pruned"
    );
    assert_eq!(outbox.pending(100).await.expect("pending").len(), 8);
}

/// Pruning walks the oldest rows by id, so one call costs at most `limit` rows however large the
/// table is, and a row still waiting at the front holds back nothing behind it.
#[tokio::test]
async fn pruning_takes_the_published_rows_among_the_oldest() {
    let (_db, outbox) = outbox_with_ten_events().await;
    let ids: Vec<i64> = outbox.pending(10).await.expect("pending").iter().map(|r| r.id).collect();
    // The oldest row waits (its partition's broker is away); the nine after it were published.
    let long_ago = SystemClock.now() - chrono::Duration::hours(2);
    outbox.mark_published(&ids[1..], long_ago).await.expect("published");

    let cutoff = SystemClock.now() - chrono::Duration::hours(1);
    assert_eq!(outbox.prune(cutoff, 4).await.expect("prune"), 3, "the published three of the oldest four");
    assert_eq!(outbox.prune(cutoff, 4).await.expect("prune"), 3, "then of the next oldest four");
    assert_eq!(outbox.prune(cutoff, 100).await.expect("prune"), 3);
    let left = outbox.pending(100).await.expect("pending");
    assert_eq!(left.iter().map(|r| r.id).collect::<Vec<_>>(), [ids[0]], "the waiting row stays");
    assert_eq!(outbox.prune(cutoff, 100).await.expect("prune"), 0);
}
