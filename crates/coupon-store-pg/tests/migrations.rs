//! The embedded migrations apply to an empty database, revert completely, and apply again.

use coupon_store_pg::migrate;
use coupon_store_pg::tls::PgTls;
use coupon_testkit::TestDatabase;
use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;

#[derive(QueryableByName)]
struct Table {
    #[diesel(sql_type = Text)]
    table_name: String,
}

async fn tables(db: &TestDatabase) -> Vec<String> {
    let mut conn = db.connect().await;
    let rows: Vec<Table> = diesel::sql_query(
        "SELECT table_name::text AS table_name FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations' ORDER BY 1",
    )
    .load(&mut conn)
    .await
    .expect("list tables");
    rows.into_iter().map(|t| t.table_name).collect()
}

/// How many migration directories the repository holds: every one of them must be embedded.
fn migrations_on_disk() -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    std::fs::read_dir(&dir)
        .expect("read migrations/")
        .filter(|entry| entry.as_ref().expect("dir entry").path().join("up.sql").is_file())
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_apply_revert_and_reapply_on_a_fresh_database() {
    let db = TestDatabase::empty().await;
    let conn = db.connection_string();
    let count = migrations_on_disk();

    let applied = migrate::run_pending(&conn, &PgTls::default()).await.expect("apply");
    assert_eq!(applied.len(), count, "{applied:?}");
    assert_eq!(
        tables(&db).await,
        [
            "code_jobs",
            "consumer_offsets",
            "coupon_codes",
            "coupon_issues",
            "coupon_policies",
            "coupon_reservations",
            "daily_statistics",
            "idempotency_keys",
            "job_locks",
            "job_runs",
            "order_stacks",
            "outbox",
            "processed_events",
            "worker_leases"
        ]
    );
    assert!(migrate::pending(&conn, &PgTls::default()).await.expect("pending").is_empty());
    assert!(
        migrate::run_pending(&conn, &PgTls::default()).await.expect("re-run").is_empty(),
        "a second run applies nothing"
    );

    let reverted = migrate::revert_all(&conn, &PgTls::default()).await.expect("revert");
    assert_eq!(reverted.len(), count);
    assert!(tables(&db).await.is_empty(), "every down.sql removes what its up.sql created");
    assert_eq!(migrate::pending(&conn, &PgTls::default()).await.expect("pending").len(), count);

    assert_eq!(migrate::run_pending(&conn, &PgTls::default()).await.expect("reapply").len(), count);
}
