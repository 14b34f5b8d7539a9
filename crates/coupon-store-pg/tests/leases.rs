//! Worker leases against the real PostgreSQL: one holder at a time, renewal, lapse and takeover.

use std::time::Duration;

use coupon_domain::relay::Leases;
use coupon_store_pg::leases::PgLeases;
use coupon_store_pg::pool::{PgConfig, PgPool};
use coupon_store_pg::tls::PgTls;
use coupon_testkit::TestDatabase;

#[tokio::test]
async fn a_lease_has_one_holder_until_it_lapses_or_is_given_up() {
    let db = TestDatabase::migrated().await;
    let pool = PgPool::new(&PgConfig {
        connection_string: db.connection_string(),
        max_size: 4,
        timeout: Duration::from_secs(10),
        tls: PgTls::default(),
    })
    .expect("pool");
    let leases = PgLeases::new(pool);
    let period = Duration::from_millis(600);

    assert!(leases.hold("relay", "a", period).await.expect("hold"), "free: a takes it");
    assert!(!leases.hold("relay", "b", period).await.expect("hold"), "held: b does not");
    assert!(leases.hold("relay", "a", period).await.expect("renew"), "a renews");
    assert!(leases.hold("consume:t:0", "b", period).await.expect("hold"), "another name is another lease");
    assert_eq!(
        leases.live("consume:").await.expect("live"),
        [("consume:t:0".to_owned(), "b".to_owned())],
        "live leases by prefix"
    );

    tokio::time::sleep(period + Duration::from_millis(200)).await;
    assert!(leases.live("").await.expect("live").is_empty(), "both lapsed");
    assert!(leases.hold("relay", "b", period).await.expect("takeover"), "a lapsed lease is taken over");
    assert!(!leases.hold("relay", "a", period).await.expect("hold"), "the old holder lost it");

    leases.release("relay", "a").await.expect("release");
    assert!(!leases.hold("relay", "c", period).await.expect("hold"), "only the holder can give it up");
    leases.release("relay", "b").await.expect("release");
    assert!(leases.hold("relay", "c", period).await.expect("hold"), "given up: free at once");
}
