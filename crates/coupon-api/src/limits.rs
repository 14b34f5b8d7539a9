//! The abuse limits at the HTTP edge: 429 `RATE_LIMITED` with `Retry-After` and `X-RateLimit-*`,
//! and 403 `ACCESS_BLOCKED` for callers who guessed too many codes. The limiter is a guard, not a
//! record: when it cannot answer, requests go through (and a warning is logged).

use std::sync::Arc;

use actix_web::HttpRequest;
use coupon_domain::id::UserId;
use coupon_domain::limits::{RateLimiter, RateStatus, RateVerdict};

use crate::error::{ApiError, ErrorCode};

/// The limiter, or none when `COUPON_RATE_LIMIT_ENABLED=false`.
#[derive(Clone, Default)]
pub struct Limits(Option<Arc<dyn RateLimiter>>);

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Limits(enabled: {})", self.0.is_some())
    }
}

/// `X-RateLimit-*` headers for a status.
pub fn rate_headers(status: &RateStatus) -> Vec<(&'static str, String)> {
    vec![
        ("X-RateLimit-Limit", status.limit.to_string()),
        ("X-RateLimit-Remaining", status.remaining.to_string()),
        ("X-RateLimit-Reset", status.reset_after.as_secs().to_string()),
    ]
}

/// The caller's address as the gateway reports it (`Forwarded` / `X-Forwarded-For`), else the peer.
pub fn client_ip(req: &HttpRequest) -> String {
    req.connection_info().realip_remote_addr().unwrap_or("unknown").to_owned()
}

impl Limits {
    pub fn enabled(limiter: Arc<dyn RateLimiter>) -> Self {
        Self(Some(limiter))
    }

    pub fn disabled() -> Self {
        Self(None)
    }

    /// Counts an issuing request of `user`.
    ///
    /// # Errors
    /// 429 `RATE_LIMITED` over a limit.
    pub async fn admit_issue(&self, user: UserId) -> Result<Option<RateStatus>, ApiError> {
        let Some(limiter) = &self.0 else { return Ok(None) };
        match limiter.hit_issue(user).await {
            Ok(RateVerdict::Allowed(status)) => Ok(Some(status)),
            Ok(RateVerdict::Limited(status)) => {
                let mut error = ApiError::new(ErrorCode::RateLimited, "Too many requests; retry later");
                error.headers = rate_headers(&status);
                error.headers.push(("Retry-After", status.reset_after.as_secs().max(1).to_string()));
                Err(error)
            }
            Err(e) => {
                tracing::warn!(user.id = %user, error = %e, "rate limiter unavailable; request allowed");
                Ok(None)
            }
        }
    }

    /// # Errors
    /// 403 `ACCESS_BLOCKED` when the user or address is blocked for guessing codes.
    pub async fn ensure_not_blocked(&self, user: UserId, ip: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.0 else { return Ok(()) };
        match limiter.is_blocked(user, ip).await {
            Ok(false) => Ok(()),
            Ok(true) => Err(ApiError::new(
                ErrorCode::AccessBlocked,
                "Too many unknown coupon codes; coupon codes are blocked for this caller",
            )),
            Err(e) => {
                tracing::warn!(user.id = %user, error = %e, "block list unavailable; request allowed");
                Ok(())
            }
        }
    }

    /// Counts an unknown code towards a block.
    pub async fn note_unknown_code(&self, user: UserId, ip: &str) {
        if let Some(limiter) = &self.0
            && let Err(e) = limiter.record_unknown_code(user, ip).await
        {
            tracing::warn!(user.id = %user, error = %e, "cannot count an unknown coupon code");
        }
    }
}
