//! The abuse limits at the HTTP edge: 429 `RATE_LIMITED` with `Retry-After` and `X-RateLimit-*`,
//! and 403 `ACCESS_BLOCKED` for callers who guessed too many codes, by user and by client address. The limiter is a guard, not a
//! record: when it cannot answer, requests go through (and a warning is logged).

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::HttpRequest;
use coupon_domain::id::UserId;
use coupon_domain::limits::{CodeAttempt, CodeCaller, RateLimiter, RateStatus, RateVerdict};
use coupon_domain::port::StoreError;
use ipnet::IpNet;

use crate::error::{ApiError, ErrorCode};

/// The limiter, or none when `COUPON_RATE_LIMIT_ENABLED=false`, and the proxies that may name
/// the client.
#[derive(Clone, Default)]
pub struct Limits {
    limiter: Option<Arc<dyn RateLimiter>>,
    proxies: TrustedProxies,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("enabled", &self.limiter.is_some())
            .field("proxies", &self.proxies)
            .finish()
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

/// The proxies in front of the service (`HTTP_TRUSTED_PROXIES`): only they may name the client
/// in `X-Forwarded-For` (SPEC §10). Anyone else could name any address, to slip past a block or
/// to get a victim's address blocked.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

/// Most `X-Forwarded-For` entries read, from the right: a chain of proxies is short, and a
/// client must not make the server walk a header of thousands.
const MAX_FORWARDED_HOPS: usize = 16;

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self(networks.into())
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the TCP peer, unless the peer is a trusted proxy; then the
    /// right-most `X-Forwarded-For` address that is not one (values that are not IP addresses are
    /// ignored). `None` when every hop is a trusted proxy: a proxy's address, shared by all its
    /// clients, must never be blocked.
    pub fn client_address(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip().to_canonical();
        if !self.contains(peer) {
            return Some(peer);
        }
        let headers: Vec<&str> =
            req.headers().get_all("X-Forwarded-For").filter_map(|v| v.to_str().ok()).collect();
        headers
            .iter()
            .rev()
            .flat_map(|header| header.rsplit(','))
            .take(MAX_FORWARDED_HOPS)
            .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .find(|ip| !self.contains(*ip))
    }
}

impl Limits {
    pub fn enabled(limiter: Arc<dyn RateLimiter>, proxies: TrustedProxies) -> Self {
        Self { limiter: Some(limiter), proxies }
    }

    pub fn disabled() -> Self {
        Self::default()
    }

    /// Counts an issuing request of `user`.
    ///
    /// # Errors
    /// 429 `RATE_LIMITED` over a limit.
    pub async fn admit_issue(&self, user: UserId) -> Result<Option<RateStatus>, ApiError> {
        let Some(limiter) = &self.limiter else { return Ok(None) };
        verdict(user, limiter.hit_issue(user).await)
    }

    /// Counts a code check of `user`.
    ///
    /// # Errors
    /// 429 `RATE_LIMITED` over `COUPON_VALIDATE_PER_MINUTE`.
    pub async fn admit_validate(&self, user: UserId) -> Result<Option<RateStatus>, ApiError> {
        let Some(limiter) = &self.limiter else { return Ok(None) };
        verdict(user, limiter.hit_validate(user).await)
    }

    /// Takes a code attempt of `user` from the request's client address; settle it with
    /// [`Limits::settle_code_attempt`] once the code was looked up.
    ///
    /// # Errors
    /// 403 `ACCESS_BLOCKED` when the user or the address is blocked for guessing codes.
    pub async fn take_code_attempt(
        &self,
        req: &HttpRequest,
        user: UserId,
    ) -> Result<Option<CodeCaller>, ApiError> {
        let Some(limiter) = &self.limiter else { return Ok(None) };
        let caller = CodeCaller { user, address: self.proxies.client_address(req) };
        match limiter.take_code_attempt(caller).await {
            Ok(CodeAttempt::Taken) => Ok(Some(caller)),
            Ok(CodeAttempt::Blocked) => Err(ApiError::new(
                ErrorCode::AccessBlocked,
                "Too many unknown coupon codes; coupon codes are blocked for this caller",
            )),
            Err(e) => {
                tracing::warn!(user.id = %user, error = %e, "block list unavailable; request allowed");
                Ok(None)
            }
        }
    }

    /// Settles an attempt: an unknown code counts towards a block, a known one is given back.
    pub async fn settle_code_attempt(&self, caller: Option<CodeCaller>, unknown: bool) {
        if let (Some(limiter), Some(caller)) = (&self.limiter, caller)
            && let Err(e) = limiter.settle_code_attempt(caller, unknown).await
        {
            tracing::warn!(user.id = %caller.user, error = %e, "cannot settle a coupon code attempt");
        }
    }
}

/// The limiter's verdict as the API answers it; a limiter that cannot answer lets the request
/// through.
fn verdict(user: UserId, verdict: Result<RateVerdict, StoreError>) -> Result<Option<RateStatus>, ApiError> {
    match verdict {
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
