//! Who is calling (SPEC §5, Auth).
//!
//! Users are identified by the gateway's `X-User-Id` header (a positive integer; missing or
//! invalid → 401 `UNAUTHENTICATED`), and may only act for themselves (another user's id in the body
//! or path → 403 `UNAUTHORIZED_COUPON_ACCESS`). Admin endpoints need `Authorization: Bearer <token>`
//! with one of `COUPON_ADMIN_TOKENS` (missing → 401, not accepted → 403).

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header::{AUTHORIZATION, HeaderName};
use actix_web::{FromRequest, HttpRequest, web};
use coupon_domain::id::UserId;

use crate::error::{ApiError, ErrorCode};

/// The calling user, from `X-User-Id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller(pub UserId);

impl Caller {
    /// The caller may act only for themselves.
    ///
    /// # Errors
    /// 403 `UNAUTHORIZED_COUPON_ACCESS` when `user` is someone else.
    pub fn must_be(self, user: UserId) -> Result<(), ApiError> {
        if self.0 == user {
            Ok(())
        } else {
            Err(ApiError::new(ErrorCode::UnauthorizedCouponAccess, "You can only act on your own coupons"))
        }
    }
}

/// `X-User-Id`, named once: a lookup by a `&str` builds (and allocates) the name each time.
const USER_HEADER: HeaderName = HeaderName::from_static("x-user-id");

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let user = req
            .headers()
            .get(USER_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
            .and_then(UserId::new);
        ready(
            user.map(Caller).ok_or_else(|| {
                ApiError::new(ErrorCode::Unauthenticated, "A valid X-User-Id header is required")
            }),
        )
    }
}

/// The accepted admin tokens.
#[derive(Clone)]
pub struct AdminTokens(Arc<Vec<String>>);

impl std::fmt::Debug for AdminTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminTokens({} configured)", self.0.len())
    }
}

impl AdminTokens {
    pub fn new(tokens: Vec<String>) -> Self {
        Self(Arc::new(tokens))
    }

    /// Compares in constant time, so response timing does not reveal how much of a token matched.
    fn accepts(&self, candidate: &str) -> bool {
        self.0.iter().fold(false, |found, token| {
            found | constant_time_eq::constant_time_eq(token.as_bytes(), candidate.as_bytes())
        })
    }
}

/// An authenticated admin call.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(tokens) = req.app_data::<web::Data<AdminTokens>>() else {
            return ready(Err(ApiError::unexpected(&anyhow::anyhow!(
                "admin tokens are not configured in app data"
            ))));
        };
        let bearer = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        ready(match bearer {
            None => Err(ApiError::new(ErrorCode::Unauthenticated, "An admin bearer token is required")),
            Some(token) if tokens.accepts(token) => Ok(Admin),
            Some(_) => {
                Err(ApiError::new(ErrorCode::UnauthorizedCouponAccess, "This admin token is not accepted"))
            }
        })
    }
}

/// Who reads a coupon: an admin (a bearer token, checked as [`Admin`]), or a user (`X-User-Id`)
/// who may read only their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    Admin,
    User(UserId),
}

impl Viewer {
    /// Whether the viewer may see what `owner` holds.
    pub fn sees(self, owner: UserId) -> bool {
        match self {
            Viewer::Admin => true,
            Viewer::User(user) => user == owner,
        }
    }
}

impl FromRequest for Viewer {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if req.headers().contains_key(AUTHORIZATION) {
            return ready(Admin::from_request(req, payload).into_inner().map(|Admin| Viewer::Admin));
        }
        ready(Caller::from_request(req, payload).into_inner().map(|Caller(user)| Viewer::User(user)))
    }
}
