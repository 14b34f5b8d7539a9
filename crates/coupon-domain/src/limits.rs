//! Abuse limits (SPEC §5, §10): issuing requests per user per minute and per hour, code checks
//! per user per minute, and blocking callers who guess coupon codes. They protect the service; no
//! invariant depends on them, so a limiter that cannot answer lets requests through.

use std::net::IpAddr;
use std::time::Duration;

use crate::id::UserId;
use crate::port::{PortFuture, StoreError};

/// Where a rate window stands for one caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateStatus {
    /// The limit of the tightest window.
    pub limit: u32,
    /// Requests left before a window refuses.
    pub remaining: u32,
    /// Until the refusing (or tightest) window starts over.
    pub reset_after: Duration,
}

/// The limiter's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    Allowed(RateStatus),
    /// `RATE_LIMITED`; retry after `reset_after`.
    Limited(RateStatus),
}

/// Who types a coupon code: the user, and the address they come from when it is known and is not
/// one of the service's own proxies (an address shared by every caller must never be blocked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeCaller {
    pub user: UserId,
    pub address: Option<IpAddr>,
}

/// Whether a code attempt may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeAttempt {
    /// Counted; settle it once the code was looked up.
    Taken,
    /// `ACCESS_BLOCKED`: the user or the address guessed too many codes.
    Blocked,
}

/// Counts requests and code attempts.
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one issuing request of `user` against the per-minute and per-hour limits.
    fn hit_issue(&self, user: UserId) -> PortFuture<'_, Result<RateVerdict, StoreError>>;
    /// Counts one code check (`validate`) of `user` against its own per-minute limit.
    fn hit_validate(&self, user: UserId) -> PortFuture<'_, Result<RateVerdict, StoreError>>;
    /// Takes one code attempt of `caller`, refused when the user or the address is blocked or
    /// has the limit's worth of attempts counted. Checking and counting are one step for each of
    /// them, so parallel guesses cannot outrun the limit (SPEC §10).
    fn take_code_attempt(&self, caller: CodeCaller) -> PortFuture<'_, Result<CodeAttempt, StoreError>>;
    /// Settles a taken attempt once the code was looked up: an existing code gives it back, an
    /// unknown one keeps it, and the caller is blocked once the limit is reached within an hour.
    fn settle_code_attempt(
        &self,
        caller: CodeCaller,
        unknown: bool,
    ) -> PortFuture<'_, Result<(), StoreError>>;
}
