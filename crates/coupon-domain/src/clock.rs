//! Where "now" comes from. Every rule that depends on time (issuance windows, expiry,
//! reservation timeouts) asks a [`Clock`], so tests move time instead of sleeping.

use chrono::{DateTime, Datelike, SubsecRound, Utc};

/// Years an instant from outside (a request, a record) may lie in. Far-off dates are never
/// meant, and PostgreSQL's and chrono's ranges differ beyond them (year -5000 is a 500 when
/// it reaches the database).
pub const SUPPORTED_YEARS: std::ops::RangeInclusive<i32> = 2000..=9999;

/// Whether an instant from outside lies in [`SUPPORTED_YEARS`].
pub fn is_supported(t: DateTime<Utc>) -> bool {
    SUPPORTED_YEARS.contains(&t.year())
}

/// The current instant, as the service sees it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock of the machine, to the microsecond: the precision of PostgreSQL's
/// `timestamptz`, so an instant read back from the database equals the one that was written.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    // The one reading of the wall clock (clippy.toml bans it everywhere else).
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}
