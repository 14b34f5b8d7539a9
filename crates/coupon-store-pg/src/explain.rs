//! `EXPLAIN` of the crate's own queries, for the tests that pin their plans: the query's own SQL
//! and binds, so that what is explained is what runs.

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
