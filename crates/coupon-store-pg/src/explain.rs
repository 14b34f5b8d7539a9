//! `EXPLAIN` of the crate's own queries, for the tests that pin their plans: the query's own SQL
//! and binds, so that what is explained is what runs; and the coupons those tests explain them on.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::Json;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

/// `EXPLAIN (FORMAT JSON)` of a query, or `EXPLAIN (ANALYZE, FORMAT JSON)` when `analyze`.
struct Explain<Q> {
    query: Q,
    analyze: bool,
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Explain<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.unsafe_to_cache_prepared();
        out.push_sql(if self.analyze { "EXPLAIN (ANALYZE, FORMAT JSON) " } else { "EXPLAIN (FORMAT JSON) " });
        self.query.walk_ast(out.reborrow())
    }
}

impl<Q> QueryId for Explain<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q> Query for Explain<Q> {
    type SqlType = Json;
}

/// The plan PostgreSQL would run `query` with.
pub(crate) async fn plan<Q: QueryFragment<Pg> + Send>(conn: &mut AsyncPgConnection, query: Q) -> Value {
    Explain { query, analyze: false }.get_result(conn).await.expect("explain")
}

/// The plan `query` ran with, with each node's actual rows (the query is executed).
pub(crate) async fn analyze<Q: QueryFragment<Pg> + Send>(conn: &mut AsyncPgConnection, query: Q) -> Value {
    Explain { query, analyze: true }.get_result(conn).await.expect("explain analyze")
}

/// Every node of a plan, depth first.
pub(crate) fn nodes(plan: &Value) -> Vec<&Value> {
    let mut out = vec![plan];
    for child in plan.get("Plans").and_then(Value::as_array).into_iter().flatten() {
        out.extend(nodes(child));
    }
    out
}

/// "Node Type [using index] [on relation]" for each node, indented by depth.
pub(crate) fn shape(plan: &Value) -> String {
    fn walk(plan: &Value, depth: usize, out: &mut String) {
        let field = |name: &str| plan.get(name).and_then(Value::as_str);
        out.push_str(&"  ".repeat(depth));
        out.push_str(field("Node Type").unwrap_or("?"));
        if let Some(index) = field("Index Name") {
            out.push_str(&format!(" using {index}"));
        }
        if let Some(relation) = field("Relation Name") {
            out.push_str(&format!(" on {relation}"));
        }
        out.push('\n');
        for child in plan.get("Plans").and_then(Value::as_array).into_iter().flatten() {
            walk(child, depth + 1, out);
        }
    }
    let mut out = String::new();
    walk(plan, 1, &mut out);
    out
}

/// The statements that fill a test database with `policies` DOWNLOAD policies and ten coupons for
/// each of `users` users (slots 1 to 10, spread over the policies, dates from two days past to
/// seven days ahead), each coupon's status taken in turn from `statuses`, RESERVED and USED ones
/// with what their CHECKs require.
pub(crate) fn coupons_fixture(policies: u32, users: u32, statuses: &[&str]) -> [String; 2] {
    let count = statuses.len();
    let statuses = statuses.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
    [
        format!(
            "INSERT INTO coupon_policies (id, coupon_name, discount_type, discount_value, distribution_type, \
                 max_issue_per_user, valid_days, valid_from, valid_until) \
             SELECT n, 'Policy ' || n, 'FIXED_AMOUNT', 1000, 'DOWNLOAD', 10, 30, now() - interval '1 day', \
                 now() + interval '30 days' FROM generate_series(1, {policies}) n"
        ),
        format!(
            "INSERT INTO coupon_issues (policy_id, user_id, user_slot, status, reservation_id, reserved_at, \
                 used_at, discount_amount, issued_at, expires_at) \
             SELECT 1 + (u * 10 + s) % {policies}, u, s, st, CASE WHEN st = 'RESERVED' THEN 'r-' || u || '-' || s END, \
                    CASE WHEN st IN ('RESERVED', 'USED') THEN now() END, CASE WHEN st = 'USED' THEN now() END, \
                    CASE WHEN st = 'USED' THEN 1000 END, now() - interval '10 days', now() + (s - 3) * interval '1 day' \
             FROM generate_series(1, {users}) u, generate_series(1, 10) s, \
                  LATERAL (SELECT (ARRAY[{statuses}])[1 + (u + s) % {count}] AS st) x"
        ),
    ]
}
