//! Reservations (SPEC §4.4): the hold a checkout puts on a coupon, and how it ends.
//!
//! One aggregate serves `reserve` and `apply`. The rules (who may hold which coupon, what the
//! discount is, which confirmations are honoured, what a release may free) are the pure
//! `decide_*` functions below. A [`ReservationStore`] runs each operation in one transaction: it
//! locks the coupon, loads what the rule needs, asks the rule, and writes the outcome with its
//! outbox event. The HTTP endpoints and the Kafka consumers call the same [`Checkout`] use case.

mod checkout;
mod errors;
mod model;
mod port;
mod rules;
#[cfg(test)]
mod tests;

pub use checkout::Checkout;
pub use errors::{ConfirmError, ReleaseError, ReserveError, RestoreError};
pub use model::*;
pub use port::*;
pub use rules::*;
