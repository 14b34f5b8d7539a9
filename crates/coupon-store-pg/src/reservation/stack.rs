//! The order stacks (SPEC §11.4): one row of counters per order, `order_stacks`, moved by the
//! statements that start and end live reservations, in the same statement. The domain decides
//! from the row as read; `chk_order_stack` refuses what a concurrent writer would make of it
//! otherwise (a second non-stackable coupon, a mix, more stackable ones than the cap), failing
//! the whole statement as a race lost.

use std::collections::HashMap;

use coupon_domain::stacking::{OrderStack, Share};
use diesel::prelude::*;
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

/// The stacks of `orders` that have one, by order id.
pub(crate) async fn stacks(
    mut conn: &AsyncPgConnection,
    orders: Vec<String>,
) -> QueryResult<HashMap<String, OrderStack>> {
    if orders.is_empty() {
        return Ok(HashMap::new());
    }
    // Planned at each execution, not prepared: the table starts empty and grows by a row per
    // order, and a plan cached while it was small scans it whole (until an ANALYZE invalidates
    // it): in a 20 s checkout burst on a fresh table, 4,000 such scans halved the throughput.
    let rows: Vec<StackRow> =
        diesel::sql_query("SELECT order_id, exclusive, stackable FROM order_stacks WHERE order_id = ANY($1)")
            .bind::<Array<Text>, _>(orders)
            .load(&mut conn)
            .await?;
    Ok(rows.into_iter().map(|row| (row.order_id, counted(row.exclusive, row.stackable))).collect())
}
