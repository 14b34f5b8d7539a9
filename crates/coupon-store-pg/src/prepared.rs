//! Hand-written SQL that PostgreSQL parses and plans once per connection.
//!
//! diesel's `sql_query` marks itself unsafe to cache, so every execution sends the text again and
//! the server parses and plans it again: for the data-modifying CTEs of the checkout path that
//! planning costs about as much as running them. A [`Prepared`] statement has fixed text (its
//! `$n` placeholders written by hand, as in `sql_query`) and typed binds; diesel keeps it in the
//! connection's statement cache, keyed by that text and the bind types, and later executions send
//! only the values.
//!
//! Only text that does not change between executions may be used: every distinct text is a new
//! cache entry, kept for the life of the connection.

use std::marker::PhantomData;

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};

/// One bind value with its SQL type.
trait Bind: Send + Sync {
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

struct Typed<ST, T> {
    value: T,
    sql_type: PhantomData<fn() -> ST>,
}

impl<ST, T> Bind for Typed<ST, T>
where
    Pg: HasSqlType<ST>,
    T: ToSql<ST, Pg> + Send + Sync,
{
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<ST, T>(&self.value)
    }
}

/// A statement of fixed text whose `$n` placeholders refer to the binds in the order they were
/// added, like `sql_query`'s. Rows come back by name (`QueryableByName`).
pub(crate) struct Prepared<'a> {
    sql: &'a str,
    binds: Vec<Box<dyn Bind + 'a>>,
}

impl<'a> Prepared<'a> {
    pub(crate) fn new(sql: &'a str) -> Self {
        Self { sql, binds: Vec::new() }
    }

    /// Adds the value of the next placeholder.
    pub(crate) fn bind<ST, T>(mut self, value: T) -> Self
    where
        Pg: HasSqlType<ST>,
        T: ToSql<ST, Pg> + Send + Sync + 'a,
        ST: 'a,
    {
        self.binds.push(Box::new(Typed { value, sql_type: PhantomData::<fn() -> ST> }));
        self
    }
}

impl QueryFragment<Pg> for Prepared<'_> {
    /// Writes the text with each `$n` replaced by diesel's own placeholder for bind `n`: a
    /// placeholder used twice binds its value twice, which keeps the text and the binds in step.
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let mut rest = self.sql;
        while let Some(at) = rest.find('$') {
            out.push_sql(&rest[..at]);
            let digits = rest[at + 1..].bytes().take_while(u8::is_ascii_digit).count();
            let (number, tail) = rest[at + 1..].split_at(digits);
            let bind = number
                .parse::<usize>()
                .ok()
                .and_then(|n| self.binds.get(n.wrapping_sub(1)))
                .ok_or_else(|| unbound(self.sql, number))?;
            bind.push(&mut out)?;
            rest = tail;
        }
        out.push_sql(rest);
        Ok(())
    }
}

fn unbound(sql: &str, number: &str) -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(format!("no bind for placeholder ${number} in: {sql}").into())
}

impl QueryId for Prepared<'_> {
    type QueryId = ();
    /// Not static: the cache is keyed by the text and the bind types.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Prepared<'_> {
    type SqlType = Untyped;
}
