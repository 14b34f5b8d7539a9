//! How an operation that meets concurrent changes starts again, and when it gives up.

use coupon_domain::port::StoreError;

use crate::error::{Abort, from_diesel};

/// How many times an operation starts again after a concurrent change before giving up.
pub(crate) const ATTEMPTS: usize = 5;

/// The error of an operation that kept meeting concurrent changes.
pub(crate) fn gave_up<E: From<StoreError>>(what: &str) -> E {
    StoreError::Unexpected(anyhow::anyhow!("{what}: still changing after {ATTEMPTS} attempts")).into()
}

/// `Some(answer)`, or `None` to try again.
pub(crate) fn settled<T, E: From<StoreError>>(outcome: Result<T, Abort<E>>) -> Option<Result<T, E>> {
    match outcome {
        Ok(value) => Some(Ok(value)),
        Err(Abort::Refused(e)) => Some(Err(e)),
        Err(Abort::Db(e)) => Some(Err(from_diesel(e).into())),
        Err(Abort::Stale) => None,
    }
}

/// Runs `$attempt` (a future of one attempt, evaluated afresh on each round) until it settles, at
/// most [`ATTEMPTS`] times, and returns its answer from the enclosing function or async block.
macro_rules! settle {
    ($what:literal, $attempt:expr) => {{
        for _ in 0..$crate::reservation::ATTEMPTS {
            if let Some(answer) = $crate::reservation::settled($attempt.await) {
                return answer;
            }
        }
        Err($crate::reservation::gave_up($what))
    }};
}

pub(crate) use settle;
