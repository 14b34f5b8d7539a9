//! What every connection of the service starts with: no parallel plans, unless the connection
//! string says otherwise.

use std::time::Duration;

use coupon_store_pg::pool::{PgConfig, PgPool};
use coupon_store_pg::tls::PgTls;
use coupon_testkit::TestDatabase;
use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use secrecy::{ExposeSecret, SecretString};

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    max_parallel_workers_per_gather: String,
}

async fn parallel_workers(connection_string: SecretString) -> String {
    let pool = PgPool::new(&PgConfig {
        connection_string,
        max_size: 1,
        timeout: Duration::from_secs(10),
        tls: PgTls::default(),
    })
    .expect("pool");
    let mut conn = pool.get().await.expect("connection");
    let setting: Setting =
        diesel::sql_query("SHOW max_parallel_workers_per_gather").get_result(&mut conn).await.expect("show");
    setting.max_parallel_workers_per_gather
}

#[tokio::test]
async fn sessions_plan_without_parallel_workers_unless_the_connection_string_says_so() {
    let db = TestDatabase::empty().await;
    assert_eq!(parallel_workers(db.connection_string()).await, "0");
    let given =
        format!("{} options='-c max_parallel_workers_per_gather=1'", db.connection_string().expose_secret());
    assert_eq!(parallel_workers(given.into()).await, "1");
}
