//! Abuse limits (SPEC §5, §10): issuing requests per user per minute and per hour, code checks
//! per user per minute, and blocking callers who guess coupon codes. They protect the service; no
//! invariant depends on them, so a limiter that cannot answer lets requests through.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
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

/// A request the abuse limits turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitRefusal {
    /// `RATE_LIMITED`: over a rate window; retry after its reset.
    #[error("too many requests; retry later")]
    RateLimited(RateStatus),
    /// `ACCESS_BLOCKED`: the user or the address guessed too many codes.
    #[error("too many unknown coupon codes; coupon codes are blocked for this caller")]
    AccessBlocked,
}

/// The abuse limits as the use cases apply them. Without a limiter (`COUPON_RATE_LIMIT_ENABLED=false`)
/// every request goes through; a limiter that cannot answer lets requests through too, with a
/// warning, since no invariant depends on it.
#[derive(Clone, Default)]
pub struct Guard {
    limiter: Option<Arc<dyn RateLimiter>>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("enabled", &self.limiter.is_some()).finish()
    }
}

impl Guard {
    pub fn new(limiter: Option<Arc<dyn RateLimiter>>) -> Self {
        Self { limiter }
    }

    /// Counts an issuing request of `user`; the window's status when a limiter answered.
    ///
    /// # Errors
    /// `RateLimited` over a limit.
    pub async fn admit_issue(&self, user: UserId) -> Result<Option<RateStatus>, LimitRefusal> {
        let Some(limiter) = &self.limiter else { return Ok(None) };
        verdict(user, limiter.hit_issue(user).await)
    }

    /// Counts a code check (`validate`) of `user`.
    ///
    /// # Errors
    /// `RateLimited` over `COUPON_VALIDATE_PER_MINUTE`.
    pub async fn admit_validate(&self, user: UserId) -> Result<Option<RateStatus>, LimitRefusal> {
        let Some(limiter) = &self.limiter else { return Ok(None) };
        verdict(user, limiter.hit_validate(user).await)
    }

    /// Looks a typed code up as one attempt of `caller`: the attempt is taken before `lookup`
    /// runs and settled after it, counting towards a block when `unknown` says the code does not
    /// exist.
    ///
    /// # Errors
    /// `AccessBlocked` when the user or the address is blocked; `lookup` did not run.
    pub async fn code_attempt<T>(
        &self,
        caller: CodeCaller,
        lookup: impl Future<Output = T>,
        unknown: impl FnOnce(&T) -> bool,
    ) -> Result<T, LimitRefusal> {
        let Some(limiter) = &self.limiter else { return Ok(lookup.await) };
        let taken = match limiter.take_code_attempt(caller).await {
            Ok(CodeAttempt::Taken) => true,
            Ok(CodeAttempt::Blocked) => return Err(LimitRefusal::AccessBlocked),
            Err(e) => {
                tracing::warn!(user.id = %caller.user, error = %e, "block list unavailable; request allowed");
                false
            }
        };
        let found = lookup.await;
        if taken && let Err(e) = limiter.settle_code_attempt(caller, unknown(&found)).await {
            tracing::warn!(user.id = %caller.user, error = %e, "cannot settle a coupon code attempt");
        }
        Ok(found)
    }
}

/// The limiter's verdict; a limiter that cannot answer lets the request through.
fn verdict(
    user: UserId,
    verdict: Result<RateVerdict, StoreError>,
) -> Result<Option<RateStatus>, LimitRefusal> {
    match verdict {
        Ok(RateVerdict::Allowed(status)) => Ok(Some(status)),
        Ok(RateVerdict::Limited(status)) => Err(LimitRefusal::RateLimited(status)),
        Err(e) => {
            tracing::warn!(user.id = %user, error = %e, "rate limiter unavailable; request allowed");
            Ok(None)
        }
    }
}
