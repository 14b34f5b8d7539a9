//! The pool's local connections against the real PostgreSQL: each thread that asks gets its own
//! connections, at most its share of the pool, reused by that thread and by no other.

use std::collections::HashSet;
use std::time::Duration;

use coupon_store_pg::pool::{PgConfig, PgPool, PgPoolError};
use coupon_store_pg::tls::PgTls;
use coupon_testkit::TestDatabase;
use diesel::sql_types::Integer;
use diesel_async::RunQueryDsl;

async fn backend(conn: &mut coupon_store_pg::pool::PgConn) -> i32 {
    diesel::select(diesel::dsl::sql::<Integer>("pg_backend_pid()")).get_result(conn).await.expect("pid")
}

/// What one thread saw: the backends of its two local connections, whether a third one was
/// refused while both were held, and the backend it got again after giving them back.
struct Seen {
    held: HashSet<i32>,
    third_refused: bool,
    again: i32,
}

/// Runs `pool`'s local checkouts on a thread of its own with a single-threaded runtime, as an
/// HTTP worker does.
fn on_a_worker_thread(pool: PgPool) -> std::thread::JoinHandle<Seen> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let mut first = pool.get_local().await.expect("first");
            let mut second = pool.get_local().await.expect("second");
            let held = HashSet::from([backend(&mut first).await, backend(&mut second).await]);
            let third_refused = matches!(pool.get_local().await, Err(PgPoolError::Unavailable(_)));
            drop((first, second));
            let again = backend(&mut pool.get_local().await.expect("again")).await;
            Seen { held, third_refused, again }
        })
    })
}

#[tokio::test]
async fn each_thread_has_its_own_share_of_local_connections() {
    let db = TestDatabase::migrated().await;
    let pool = PgPool::new(&PgConfig {
        connection_string: db.connection_string(),
        max_size: 4,
        timeout: Duration::from_millis(500),
        tls: PgTls::default(),
    })
    .expect("pool")
    .with_local_size(2);

    let (a, b) = (on_a_worker_thread(pool.clone()), on_a_worker_thread(pool.clone()));
    let (a, b) = (a.join().expect("thread a"), b.join().expect("thread b"));
    for (name, seen) in [("a", &a), ("b", &b)] {
        assert_eq!(seen.held.len(), 2, "thread {name} held two connections");
        assert!(seen.third_refused, "thread {name}'s own pool holds two");
        assert!(seen.held.contains(&seen.again), "thread {name} reuses its own connections");
    }
    assert!(
        a.held.is_disjoint(&b.held),
        "no connection is shared between threads: {:?} {:?}",
        a.held,
        b.held
    );

    // The shared connections are apart from every thread's local ones.
    let mut shared = Vec::new();
    for _ in 0..4 {
        shared.push(pool.get().await.expect("a shared connection"));
    }
    let mut pids = HashSet::new();
    for conn in &mut shared {
        pids.insert(backend(conn).await);
    }
    assert_eq!(pids.len(), 4);
    assert!(pids.is_disjoint(&a.held) && pids.is_disjoint(&b.held));
}
