//! The order stacks (SPEC §11.4): one row of counters per order, `order_stacks`, moved by the
//! statements that start and end live reservations, in the same statement. The domain decides
//! from the row as read; `chk_order_stack` refuses what a concurrent writer would make of it
//! otherwise (a second non-stackable coupon, a mix, more stackable ones than the cap), failing
//! the whole statement as a race lost.

use std::collections::HashMap;

use coupon_domain::stacking::{OrderStack, Share};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{Array, SmallInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// A CTE `k` adding to their orders' stacks the shares of the rows `source` selects (columns
/// `order_id`, `exclusive`: the share, NULL for none, and `cap`: the most stackable coupons the
/// order may hold), creating an order's row at its first hold.
pub(crate) fn join_sql(source: &str) -> String {
    format!(
        ", k AS (INSERT INTO order_stacks AS st (order_id, exclusive, stackable, cap) \
                 SELECT order_id, exclusive::int::int2, (NOT exclusive)::int::int2, cap \
                 FROM ({source}) j WHERE exclusive IS NOT NULL \
                 ON CONFLICT (order_id) DO UPDATE SET exclusive = st.exclusive + EXCLUDED.exclusive, \
                        stackable = st.stackable + EXCLUDED.stackable, cap = EXCLUDED.cap \
                 RETURNING st.order_id)"
    )
}

/// A CTE `k` taking out of their orders' stacks the shares of the reservations `r` ended (`r`
/// returns `order_id` and `order_exclusive`). Several of one order count once each.
pub(crate) const LEAVE: &str = ", k AS (UPDATE order_stacks SET exclusive = order_stacks.exclusive - d.exclusive, \
        stackable = order_stacks.stackable - d.stackable \
    FROM (SELECT order_id, count(*) FILTER (WHERE order_exclusive) AS exclusive, \
                 count(*) FILTER (WHERE NOT order_exclusive) AS stackable \
          FROM r WHERE order_exclusive IS NOT NULL GROUP BY order_id) d \
    WHERE order_stacks.order_id = d.order_id RETURNING order_stacks.order_id)";

/// A share as the `exclusive` column holds it.
pub(crate) fn exclusive(share: Option<Share>) -> Option<bool> {
    share.map(|share| share == Share::Exclusive)
}

/// A share as read from a reservation's `order_exclusive`.
pub(crate) fn share(exclusive: bool) -> Share {
    if exclusive { Share::Exclusive } else { Share::Stackable }
}

/// A stack as read from its counters (an order without a row holds nothing).
pub(crate) fn counted(exclusive: i16, stackable: i16) -> OrderStack {
    OrderStack { exclusive: exclusive > 0, stackable: u16::try_from(stackable).unwrap_or(0) }
}

#[derive(QueryableByName)]
struct StackRow {
    #[diesel(sql_type = Text)]
    order_id: String,
    #[diesel(sql_type = SmallInt)]
    exclusive: i16,
    #[diesel(sql_type = SmallInt)]
    stackable: i16,
}

/// The read of the stacks of `orders`: one lookup by key per order.
///
/// The table grows by a row per order, faster than its statistics follow. Planned from statistics
/// taken while it was empty, `order_id = ANY($1)` scanned the whole table (78,561 rows in 7.4 ms,
/// in a checkout burst, where the key finds the same hundred orders in 0.1 ms). A lookup per order
/// under LIMIT, which keeps the planner from folding it back into a join, is an index probe at any
/// size but the tiniest. Planned at each execution, not prepared: a plan cached while the table was
/// empty would scan it for every order.
fn stacks_query(orders: Vec<String>) -> BoxedSqlQuery<'static, Pg, SqlQuery> {
    diesel::sql_query(
        "SELECT s.order_id, s.exclusive, s.stackable FROM unnest($1::text[]) AS o(order_id) \
         CROSS JOIN LATERAL (SELECT order_id, exclusive, stackable FROM order_stacks \
                             WHERE order_stacks.order_id = o.order_id LIMIT 1) s",
    )
    .into_boxed()
    .bind::<Array<Text>, _>(orders)
}

/// The stacks of `orders` that have one, by order id.
pub(crate) async fn stacks(
    mut conn: &AsyncPgConnection,
    orders: Vec<String>,
) -> QueryResult<HashMap<String, OrderStack>> {
    if orders.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<StackRow> = stacks_query(orders).load(&mut conn).await?;
    Ok(rows.into_iter().map(|row| (row.order_id, counted(row.exclusive, row.stackable))).collect())
}

#[cfg(test)]
mod tests {
    use coupon_domain::stacking::OrderStack;
    use coupon_testkit::TestDatabase;
    use diesel_async::RunQueryDsl;

    use crate::explain::{analyze, nodes, shape};

    /// Statistics taken while the table was empty (as after the migrations, or a `VACUUM ANALYZE`
    /// before a burst), then 40,000 orders: the read still probes the key once per order and
    /// finds exactly the orders that have a stack.
    #[tokio::test(flavor = "multi_thread")]
    async fn stacks_are_read_by_key_whatever_the_statistics_say() {
        let db = TestDatabase::migrated().await;
        let mut conn = db.connect().await;
        for sql in [
            "VACUUM ANALYZE order_stacks",
            "INSERT INTO order_stacks (order_id, exclusive, stackable, cap) \
             SELECT 'O-' || n, (n % 2)::int2, (1 - n % 2)::int2, 5 FROM generate_series(1, 40000) n",
        ] {
            diesel::sql_query(sql).execute(&mut conn).await.expect("test data");
        }
        // A hundred orders: fifty with a stack (odd ones exclusive, even ones one stackable
        // coupon), fifty without.
        let orders: Vec<String> = (39_951..=40_050).map(|n| format!("O-{n}")).collect();
        let explained = analyze(&mut conn, super::stacks_query(orders.clone())).await;
        let root = &explained[0]["Plan"];
        let text = shape(root);
        assert!(
            nodes(root).iter().all(|n| n["Node Type"] != "Seq Scan" || n["Relation Name"] != "order_stacks"),
            "the stacks are scanned whole:\n{text}"
        );
        assert!(text.contains("Index Scan using order_stacks_pkey on order_stacks"), "{text}");
        let found = super::stacks(&conn, orders).await.expect("stacks");
        assert_eq!(found.len(), 50);
        assert_eq!(found["O-39951"], OrderStack { exclusive: true, stackable: 0 });
        assert_eq!(found["O-40000"], OrderStack { exclusive: false, stackable: 1 });
        assert!(!found.contains_key("O-40001"));
    }
}
