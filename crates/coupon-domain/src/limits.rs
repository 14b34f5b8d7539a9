//! Abuse limits (SPEC §5): issuing requests per user per minute and per hour, and blocking callers
//! who guess coupon codes. They protect the service; no invariant depends on them, so a limiter
//! that cannot answer lets requests through.

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

/// Counts requests and failed code attempts.
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one issuing request of `user` against the per-minute and per-hour limits.
    fn hit_issue(&self, user: UserId) -> PortFuture<'_, Result<RateVerdict, StoreError>>;
    /// Whether `user` or `ip` is blocked for guessing codes.
    fn is_blocked<'a>(&'a self, user: UserId, ip: &'a str) -> PortFuture<'a, Result<bool, StoreError>>;
    /// Counts an unknown code entered by `user` from `ip`; enough of them within an hour block
    /// the user and the address.
    fn record_unknown_code<'a>(&'a self, user: UserId, ip: &'a str)
    -> PortFuture<'a, Result<(), StoreError>>;
}
