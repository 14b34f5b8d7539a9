//! Driver errors, translated once. A connection or pool failure is `Unavailable` (the API answers
//! 503 and the client may retry); anything else the store did not expect is `Unexpected` (500).
//! Business outcomes (unique violations that mean "already issued", …) are recognised by the
//! adapter that knows what the constraint means, before they reach these functions.

use coupon_domain::port::StoreError;
use diesel::result::{DatabaseErrorKind, Error};

use crate::pool::PgPoolError;

/// Maps a query error.
pub fn from_diesel(e: Error) -> StoreError {
    match &e {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        )
        | Error::BrokenTransactionManager => StoreError::Unavailable(format!("PostgreSQL: {e}")),
        // Only `idempotency::write_receipts` rolls back this way: a retry took over the request's
        // idempotency key, so this run commits nothing; the client's next retry gets the answer.
        Error::RollbackTransaction => {
            StoreError::Unavailable("a retry took over this request's Idempotency-Key; retry".into())
        }
        // The driver's message goes into the text itself: logs print an error's outer message,
        // and "query failed" alone does not say which value or constraint broke it.
        _ => StoreError::Unexpected(anyhow::anyhow!("PostgreSQL query failed: {e}")),
    }
}

/// Maps a failed checkout.
pub fn from_pool(e: PgPoolError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The name of the constraint a database error violated, if any.
pub fn violated_constraint(e: &Error) -> Option<&str> {
    match e {
        Error::DatabaseError(_, info) => info.constraint_name(),
        _ => None,
    }
}

/// Whether `e` is a race lost to a concurrent writer that a fresh read sees: a reservation id
/// inserted twice, an order's stack without room (`chk_order_stack`), a budget spent
/// (`chk_policy_budget`). The write committed nothing; the next attempt decides again.
pub(crate) fn lost_race(e: &Error) -> bool {
    match e {
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => true,
        Error::DatabaseError(DatabaseErrorKind::CheckViolation, info) => {
            matches!(info.constraint_name(), Some("chk_order_stack" | "chk_policy_budget"))
        }
        _ => false,
    }
}

/// A stored value that the domain does not accept: the row was written by something that
/// bypassed the schema's checks, or the code and the schema disagree.
pub fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Unexpected(anyhow::anyhow!("corrupt {what} row: {detail}"))
}

/// How a transaction, or one attempt at it, ends without committing; what it wrote rolls back.
pub(crate) enum Abort<E> {
    /// An answer other than success (a business refusal, or a failure the caller reports).
    Refused(E),
    /// Something changed since the read: roll back and try again.
    Stale,
    Db(Error),
}

impl<E> From<Error> for Abort<E> {
    fn from(e: Error) -> Self {
        // A lost race (see [`lost_race`]): the next attempt reads its result. Any other
        // constraint refusing a write is a bug, not a race: retrying cannot help. Inserts that
        // expect a conflict say `ON CONFLICT DO NOTHING` and never get here.
        if lost_race(&e) { Abort::Stale } else { Abort::Db(e) }
    }
}
