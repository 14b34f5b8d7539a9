//! The business API's errors: the SPEC §5 codes, each with its status, and every domain outcome
//! mapped to one of them. The envelope itself (`{"code","message","status","path","timestamp",
//! "fieldErrors"}`) is written by the HTTP chassis, `coupon-http`, for this crate's errors and the
//! framework's alike; [`ApiError`] hands it a [`Problem`]. Internal errors are logged once, here,
//! and never described to the client.

use std::borrow::Cow;
use std::fmt;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use coupon_http::envelope::Problem;
use serde::Serialize;

/// Error codes of SPEC §5, plus the few HTTP-level ones the table does not name
/// (`NOT_FOUND` for unknown routes, `METHOD_NOT_ALLOWED`, `PAYLOAD_TOO_LARGE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ValidationError,
    InvalidRequest,
    PolicyInactive,
    InvalidIssueType,
    InvalidDiscountValue,
    InvalidDateRange,
    CouponIssuePeriodNotStarted,
    CouponIssuePeriodExpired,
    MinimumOrderNotMet,
    InvalidOrderAmount,
    Unauthenticated,
    UnauthorizedCouponAccess,
    AccessBlocked,
    CouponNotFound,
    CouponCodeNotFound,
    PolicyNotFound,
    ReservationNotFound,
    NotFound,
    MethodNotAllowed,
    DuplicateCouponCode,
    CouponAlreadyIssued,
    CouponAlreadyUsed,
    CouponNotAvailable,
    CouponNotStackable,
    BudgetExhausted,
    LockAcquisitionFailed,
    OptimisticLockFailure,
    ConcurrentModification,
    CouponSoldOut,
    CouponExpired,
    ReservationExpired,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    PayloadTooLarge,
    RateLimited,
    InternalError,
    ServiceUnavailable,
}

impl ErrorCode {
    /// The code's name on the wire (its serde name, the one place that spells it).
    pub fn wire_name(self) -> String {
        serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    }

    /// The HTTP status SPEC §5 pairs with the code.
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            ValidationError
            | InvalidRequest
            | PolicyInactive
            | InvalidIssueType
            | InvalidDiscountValue
            | InvalidDateRange
            | CouponIssuePeriodNotStarted
            | CouponIssuePeriodExpired
            | MinimumOrderNotMet
            | InvalidOrderAmount => StatusCode::BAD_REQUEST,
            Unauthenticated => StatusCode::UNAUTHORIZED,
            UnauthorizedCouponAccess | AccessBlocked => StatusCode::FORBIDDEN,
            CouponNotFound | CouponCodeNotFound | PolicyNotFound | ReservationNotFound | NotFound => {
                StatusCode::NOT_FOUND
            }
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            DuplicateCouponCode
            | CouponAlreadyIssued
            | CouponAlreadyUsed
            | CouponNotAvailable
            | CouponNotStackable
            | BudgetExhausted
            | LockAcquisitionFailed
            | OptimisticLockFailure
            | ConcurrentModification
            | IdempotencyInProgress => StatusCode::CONFLICT,
            IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            CouponSoldOut | CouponExpired | ReservationExpired => StatusCode::GONE,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RateLimited => StatusCode::TOO_MANY_REQUESTS,
            InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

pub use coupon_http::envelope::FieldError;

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub field_errors: Vec<FieldError>,
    /// Extra response headers (`Retry-After`, `X-RateLimit-*`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), field_errors: Vec::new(), headers: Vec::new() }
    }

    /// `VALIDATION_ERROR` listing the invalid fields.
    pub fn validation(field_errors: Vec<FieldError>) -> Self {
        Self {
            code: ErrorCode::ValidationError,
            message: "Request validation failed".into(),
            field_errors,
            headers: Vec::new(),
        }
    }

    /// A failure the client cannot act on. The cause is logged here, once, and not sent.
    pub fn unexpected(cause: &anyhow::Error) -> Self {
        tracing::error!(error = format!("{cause:#}"), "unexpected error");
        Self::new(ErrorCode::InternalError, "An internal error occurred")
    }

    /// A dependency is down: the client may retry later.
    pub fn unavailable(dependency: &str, cause: &dyn fmt::Display) -> Self {
        tracing::warn!(dependency, error = %cause, "dependency unavailable");
        Self::new(ErrorCode::ServiceUnavailable, format!("{dependency} is unavailable, retry later"))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        self.problem().error_response()
    }
}

impl ApiError {
    /// What the chassis writes into the envelope.
    fn problem(&self) -> Problem {
        Problem {
            status: self.code.status(),
            code: Cow::Owned(self.code.wire_name()),
            message: self.message.clone(),
            field_errors: self.field_errors.clone(),
            headers: self.headers.clone(),
        }
    }
}

/// The body of every error (SPEC §5), as the OpenAPI document describes it; `coupon-http` writes it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    pub status: u16,
    pub path: String,
    pub timestamp: String,
    pub field_errors: Vec<FieldErrorBody>,
}

/// One invalid input field, as the OpenAPI document describes it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = FieldError)]
pub struct FieldErrorBody {
    pub field: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_spec_names_with_spec_statuses() {
        let cases = [
            (ErrorCode::CouponSoldOut, "COUPON_SOLD_OUT", 410),
            (ErrorCode::CouponIssuePeriodNotStarted, "COUPON_ISSUE_PERIOD_NOT_STARTED", 400),
            (ErrorCode::UnauthorizedCouponAccess, "UNAUTHORIZED_COUPON_ACCESS", 403),
            (ErrorCode::CouponNotAvailable, "COUPON_NOT_AVAILABLE", 409),
            (ErrorCode::CouponNotStackable, "COUPON_NOT_STACKABLE", 409),
            (ErrorCode::BudgetExhausted, "BUDGET_EXHAUSTED", 409),
            (ErrorCode::RateLimited, "RATE_LIMITED", 429),
            (ErrorCode::ServiceUnavailable, "SERVICE_UNAVAILABLE", 503),
        ];
        for (code, name, status) in cases {
            assert_eq!(serde_json::to_value(code).ok(), Some(serde_json::Value::from(name)));
            assert_eq!(code.wire_name(), name);
            assert_eq!(code.status().as_u16(), status);
        }
    }
}

/// Domain outcomes as SPEC §5 codes. Every mapping lives here, so one outcome has one code
/// whichever endpoint reports it.
pub(crate) mod from_domain {
    use coupon_domain::administration::ChangePolicyError;
    use coupon_domain::codes::StartError;
    use coupon_domain::discount::DiscountError;
    use coupon_domain::issue::IssueError;
    use coupon_domain::lifecycle::Forbidden;
    use coupon_domain::limits::LimitRefusal;
    use coupon_domain::policy::{
        ChangeRefused, CreatePolicyError, NotIssuable, SavePolicyError, SetCapError,
    };
    use coupon_domain::port::StoreError;
    use coupon_domain::reservation::{ConfirmError, ReleaseError, ReserveError};
    use coupon_domain::support::{AdminUseError, RevokeError};

    use super::{ApiError, ErrorCode, FieldError};
    use crate::limits::rate_headers;

    fn forbidden_code(e: Forbidden) -> ErrorCode {
        match e {
            Forbidden::NotAvailable => ErrorCode::CouponNotAvailable,
            Forbidden::AlreadyUsed => ErrorCode::CouponAlreadyUsed,
            Forbidden::Expired => ErrorCode::CouponExpired,
        }
    }

    fn discount_code(e: &DiscountError) -> ErrorCode {
        match e {
            DiscountError::InvalidOrderAmount => ErrorCode::InvalidOrderAmount,
            DiscountError::MinimumOrderNotMet { .. } => ErrorCode::MinimumOrderNotMet,
        }
    }

    /// The code of a refused reserve (a quote names it per coupon without consuming it).
    pub(crate) fn reserve_code(e: &ReserveError) -> ErrorCode {
        match e {
            ReserveError::Forbidden(forbidden) => forbidden_code(*forbidden),
            ReserveError::Discount(discount) => discount_code(discount),
            ReserveError::Store(StoreError::Unavailable(_)) => ErrorCode::ServiceUnavailable,
            ReserveError::Store(_) => ErrorCode::InternalError,
            ReserveError::CouponNotFound => ErrorCode::CouponNotFound,
            ReserveError::NotOwner => ErrorCode::UnauthorizedCouponAccess,
            ReserveError::IdConflict(_) | ReserveError::IdReleased(_) => ErrorCode::CouponNotAvailable,
            ReserveError::IdExpired(_) => ErrorCode::ReservationExpired,
            ReserveError::NotStackable(_) => ErrorCode::CouponNotStackable,
            ReserveError::BudgetExhausted(_) => ErrorCode::BudgetExhausted,
        }
    }

    impl From<Forbidden> for ApiError {
        fn from(e: Forbidden) -> Self {
            ApiError::new(forbidden_code(e), e.to_string())
        }
    }

    impl From<DiscountError> for ApiError {
        fn from(e: DiscountError) -> Self {
            ApiError::new(discount_code(&e), e.to_string())
        }
    }

    impl From<ReserveError> for ApiError {
        fn from(e: ReserveError) -> Self {
            match e {
                ReserveError::Store(store) => store.into(),
                other => ApiError::new(reserve_code(&other), other.to_string()),
            }
        }
    }

    impl From<ConfirmError> for ApiError {
        fn from(e: ConfirmError) -> Self {
            let message = e.to_string();
            let code = match e {
                ConfirmError::Store(store) => return store.into(),
                ConfirmError::NotFound => ErrorCode::ReservationNotFound,
                ConfirmError::NotOwner => ErrorCode::UnauthorizedCouponAccess,
                // A payment's claims are checked only for payment events, never over HTTP.
                ConfirmError::OrderMismatch | ConfirmError::Released | ConfirmError::PaymentMismatch(_) => {
                    ErrorCode::CouponNotAvailable
                }
                ConfirmError::UsedByAnotherPayment => ErrorCode::CouponAlreadyUsed,
                ConfirmError::Expired => ErrorCode::ReservationExpired,
            };
            ApiError::new(code, message)
        }
    }

    impl From<ReleaseError> for ApiError {
        fn from(e: ReleaseError) -> Self {
            let message = e.to_string();
            let code = match e {
                ReleaseError::Store(store) => return store.into(),
                ReleaseError::NotFound => ErrorCode::ReservationNotFound,
                ReleaseError::NotOwner => ErrorCode::UnauthorizedCouponAccess,
                ReleaseError::AlreadyUsed => ErrorCode::CouponAlreadyUsed,
                ReleaseError::PaymentMismatch(_) => ErrorCode::CouponNotAvailable,
            };
            ApiError::new(code, message)
        }
    }

    impl From<StoreError> for ApiError {
        fn from(e: StoreError) -> Self {
            match e {
                StoreError::Unavailable(cause) => ApiError::unavailable("the coupon store", &cause),
                StoreError::Unexpected(cause) => ApiError::unexpected(&cause),
            }
        }
    }

    impl From<NotIssuable> for ApiError {
        fn from(e: NotIssuable) -> Self {
            let code = match e {
                NotIssuable::Inactive => ErrorCode::PolicyInactive,
                NotIssuable::WrongChannel => ErrorCode::InvalidIssueType,
                NotIssuable::NotStarted => ErrorCode::CouponIssuePeriodNotStarted,
                NotIssuable::Ended => ErrorCode::CouponIssuePeriodExpired,
                NotIssuable::SoldOut => ErrorCode::CouponSoldOut,
            };
            ApiError::new(code, e.to_string())
        }
    }

    impl From<IssueError> for ApiError {
        fn from(e: IssueError) -> Self {
            match e {
                IssueError::PolicyNotFound => ApiError::new(ErrorCode::PolicyNotFound, e.to_string()),
                IssueError::CodeNotFound => ApiError::new(ErrorCode::CouponCodeNotFound, e.to_string()),
                IssueError::NotIssuable(reason) => reason.into(),
                IssueError::AlreadyIssued | IssueError::CodeRedeemed => {
                    ApiError::new(ErrorCode::CouponAlreadyIssued, e.to_string())
                }
                IssueError::Limited(refusal) => refusal.into(),
                IssueError::Unavailable(cause) => ApiError::unavailable("the coupon store", &cause),
                IssueError::Unexpected(cause) => ApiError::unexpected(&cause),
            }
        }
    }

    impl From<StartError> for ApiError {
        fn from(e: StartError) -> Self {
            match e {
                StartError::PolicyNotFound => ApiError::new(ErrorCode::PolicyNotFound, e.to_string()),
                StartError::NotUnique => ApiError::new(ErrorCode::InvalidIssueType, e.to_string()),
                StartError::Store(e) => e.into(),
            }
        }
    }

    impl From<RevokeError> for ApiError {
        fn from(e: RevokeError) -> Self {
            match e {
                RevokeError::NotFound => ApiError::new(ErrorCode::CouponNotFound, e.to_string()),
                RevokeError::Forbidden(forbidden) => forbidden.into(),
                RevokeError::Store(e) => e.into(),
            }
        }
    }

    impl From<AdminUseError> for ApiError {
        fn from(e: AdminUseError) -> Self {
            match e {
                AdminUseError::NotFound => ApiError::new(ErrorCode::CouponNotFound, e.to_string()),
                AdminUseError::Forbidden(forbidden) => forbidden.into(),
                AdminUseError::Reserve(e) => e.into(),
                AdminUseError::Confirm(e) => e.into(),
                AdminUseError::Store(e) => e.into(),
            }
        }
    }

    impl From<LimitRefusal> for ApiError {
        fn from(e: LimitRefusal) -> Self {
            match e {
                LimitRefusal::RateLimited(status) => {
                    let mut error = ApiError::new(ErrorCode::RateLimited, "Too many requests; retry later");
                    error.headers = rate_headers(&status);
                    error.headers.push(("Retry-After", status.reset_after.as_secs().max(1).to_string()));
                    error
                }
                LimitRefusal::AccessBlocked => ApiError::new(
                    ErrorCode::AccessBlocked,
                    "Too many unknown coupon codes; coupon codes are blocked for this caller",
                ),
            }
        }
    }

    impl From<CreatePolicyError> for ApiError {
        fn from(e: CreatePolicyError) -> Self {
            match e {
                CreatePolicyError::DuplicateCode => {
                    ApiError::new(ErrorCode::DuplicateCouponCode, e.to_string())
                }
                CreatePolicyError::Store(e) => e.into(),
            }
        }
    }

    impl From<SavePolicyError> for ApiError {
        fn from(e: SavePolicyError) -> Self {
            match e {
                SavePolicyError::NotFound => ApiError::new(ErrorCode::PolicyNotFound, e.to_string()),
                SavePolicyError::Conflict => ApiError::new(ErrorCode::ConcurrentModification, e.to_string()),
                SavePolicyError::Store(e) => e.into(),
            }
        }
    }

    impl From<ChangePolicyError> for ApiError {
        fn from(e: ChangePolicyError) -> Self {
            match e {
                ChangePolicyError::Refused(refused) => {
                    let field = match refused {
                        ChangeRefused::CapLowered { .. } => "maxIssueCount",
                        ChangeRefused::WindowShortened { .. } => "validUntil",
                        ChangeRefused::BudgetLowered { .. } | ChangeRefused::BudgetAdded => "budgetAmount",
                    };
                    ApiError::validation(vec![FieldError {
                        field: field.into(),
                        message: refused.to_string(),
                    }])
                }
                ChangePolicyError::Save(e) => e.into(),
            }
        }
    }

    impl From<SetCapError> for ApiError {
        fn from(e: SetCapError) -> Self {
            match e {
                SetCapError::NotFound => ApiError::new(ErrorCode::PolicyNotFound, e.to_string()),
                SetCapError::BelowIssued { .. } => ApiError::validation(vec![FieldError {
                    field: "newMaxIssueCount".into(),
                    message: e.to_string(),
                }]),
                SetCapError::Store(e) => e.into(),
            }
        }
    }
}
