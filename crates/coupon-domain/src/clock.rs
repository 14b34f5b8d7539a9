//! Where "now" comes from. Every rule that depends on time (issuance windows, expiry,
//! reservation timeouts) asks a [`Clock`], so tests move time instead of sleeping.

use chrono::{DateTime, SubsecRound, Utc};

/// The current instant, as the service sees it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock of the machine, to the microsecond: the precision of PostgreSQL's
/// `timestamptz`, so an instant read back from the database equals the one that was written.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}
