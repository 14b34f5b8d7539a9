//! Issuing endpoints (SPEC §5): download (by code or policy id), admin direct issue, and the
//! public code check.

use std::collections::{HashMap, HashSet};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use coupon_domain::coupon::IssuedCoupon;
use coupon_domain::id::{CouponId, UserId};
use coupon_domain::idempotency::Entry;
use coupon_domain::issue::{Download, Downloaded, IssueTarget, Issued};
use coupon_domain::limits::CodeCaller;
use coupon_domain::policy::{CouponCode, DistributionType, Policy};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Admin, Caller};
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::idempotency::{Idempotency, Who, answer, keyed};
use crate::limits::rate_headers;
use crate::state::AppState;
use crate::wire::{Checks, instant, maybe_instant, policy_id};
use coupon_http::resource;

/// Most users one direct-issue request may name.
pub const MAX_DIRECT_USERS: usize = 1000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/coupons/download", "POST").route(keyed(Who::User, web::post().to(download))))
        .service(
            resource("/api/coupons/direct-issue", "POST")
                .route(keyed(Who::Admin, web::post().to(direct_issue))),
        );
}

/// The code check, a pattern with a segment: registered after the checkout's fixed paths.
pub fn configure_validate(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/coupons/validate/{couponCode}", "GET").route(web::get().to(validate)));
}

/// An issued coupon on the wire (SPEC §5, issued-coupon JSON).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CouponBody {
    coupon_id: i64,
    policy_id: i64,
    user_id: i64,
    coupon_name: String,
    coupon_code: Option<String>,
    discount_type: &'static str,
    discount_value: Decimal,
    minimum_order_amount: Decimal,
    max_discount_amount: Option<Decimal>,
    status: &'static str,
    issued_at: String,
    expiry_date: String,
    used_at: Option<String>,
    reservation_id: Option<String>,
    order_id: Option<String>,
    discount_amount: Option<Decimal>,
}

impl CouponBody {
    /// The coupon as a client sees it `now`: a date-expired coupon reads as `EXPIRED`.
    pub fn new(coupon: &IssuedCoupon, policy: &Policy, now: chrono::DateTime<chrono::Utc>) -> Self {
        Self {
            coupon_id: coupon.id.get(),
            policy_id: coupon.policy_id.get(),
            user_id: coupon.user_id.get(),
            coupon_name: policy.name.clone(),
            coupon_code: policy.code.as_ref().map(|c| c.as_str().to_owned()),
            discount_type: policy.discount.discount_type().as_str(),
            discount_value: policy.discount.value().normalize(),
            minimum_order_amount: policy.discount.minimum_order_amount().amount().normalize(),
            max_discount_amount: policy.discount.max_discount_amount().map(|m| m.amount().normalize()),
            status: coupon.status.effective(coupon.expires_at, now).as_str(),
            issued_at: instant(coupon.issued_at),
            expiry_date: instant(coupon.expires_at),
            used_at: maybe_instant(coupon.used_at),
            reservation_id: coupon.reservation_id.clone(),
            order_id: coupon.order_id.clone(),
            discount_amount: coupon.discount_amount.map(|m| m.amount().normalize()),
        }
    }
}

/// Body of `POST /api/coupons/download`: `couponCode` (CODE) or `couponPolicyId` (DOWNLOAD,
/// FIRST_COME), and the caller's own `userId`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownloadBody {
    /// Exactly one of `couponCode` (CODE policies; trimmed, case-insensitive) and `couponPolicyId`.
    #[schema(value_type = Option<String>, pattern = "^\\s*[A-Za-z0-9_-]{1,50}\\s*$")]
    coupon_code: Option<String>,
    #[schema(value_type = Option<i64>, minimum = 1)]
    #[serde(default, deserialize_with = "crate::wire::whole_number")]
    coupon_policy_id: Option<i64>,
    /// Must equal X-User-Id.
    #[schema(required = true, nullable = false, value_type = i64, minimum = 1)]
    #[serde(default, deserialize_with = "crate::wire::whole_number")]
    user_id: Option<i64>,
}

#[utoipa::path(post, path = "/api/coupons/download", tag = "coupons", security(("user" = [])),
    request_body = DownloadBody,
    responses(
        (status = 201, description = "Issued", body = CouponBody),
        (status = 400, description = "VALIDATION_ERROR, POLICY_INACTIVE, INVALID_ISSUE_TYPE, COUPON_ISSUE_PERIOD_NOT_STARTED, COUPON_ISSUE_PERIOD_EXPIRED", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "UNAUTHORIZED_COUPON_ACCESS, ACCESS_BLOCKED", body = ErrorBody),
        (status = 404, description = "COUPON_CODE_NOT_FOUND, POLICY_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "COUPON_ALREADY_ISSUED", body = ErrorBody),
        (status = 410, description = "COUPON_SOLD_OUT", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED (Retry-After, X-RateLimit-*)", body = ErrorBody),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ErrorBody)))]
pub(crate) async fn download(
    req: HttpRequest,
    caller: Caller,
    keys: Idempotency,
    state: web::Data<AppState>,
    body: web::Json<DownloadBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut checks = Checks::default();
    let user = checks.required("userId", body.user_id).and_then(|u| {
        let user = UserId::new(u);
        if user.is_none() {
            checks.fail("userId", "must be a positive integer");
        }
        user
    });
    let target = match (body.coupon_code.as_deref(), body.coupon_policy_id) {
        (Some(code), None) => match CouponCode::parse(code) {
            Ok(code) => Some(IssueTarget::Code(code)),
            Err(e) => {
                checks.fail("couponCode", e.to_string());
                None
            }
        },
        (None, Some(id)) => Some(IssueTarget::Policy(policy_id(id)?)),
        _ => {
            checks.fail("couponCode", "give exactly one of couponCode and couponPolicyId");
            None
        }
    };
    checks.finish()?;
    let (Some(user), Some(target)) = (user, target) else {
        return Err(ApiError::new(ErrorCode::ValidationError, "Request validation failed"));
    };
    caller.must_be(user)?;
    // Only codes can be guessed; other downloads skip resolving the address (1-2% of the CPU of
    // a first-come issue).
    let address = match target {
        IssueTarget::Code(_) => state.proxies.client_address(&req),
        IssueTarget::Policy(_) => None,
    };
    // One instant for the answer and its stored copy (a coupon past its date reads EXPIRED).
    let now = state.clock.now();
    let cause = keys.cause(&req, move |i: &Issued| {
        answer(StatusCode::CREATED, &CouponBody::new(&i.coupon, &i.policy, now))
    });
    let download = Download { user, target, address, cause };
    let Downloaded { outcome, rate } = state.issuing.download(download).await;
    let issued = match outcome {
        Ok(issued) => issued,
        Err(e) => {
            let mut error = ApiError::from(e);
            error.headers.extend(rate.iter().flat_map(rate_headers));
            return Err(error);
        }
    };
    tracing::info!(coupon.id = %issued.coupon.id, policy.id = %issued.policy.id, user.id = %user, "coupon issued");
    metrics::counter!("coupon_issued_total", "issue_type" => issued.policy.distribution.as_str())
        .increment(1);
    let mut response = HttpResponse::Created();
    for header in rate.iter().flat_map(rate_headers) {
        response.insert_header(header);
    }
    Ok(response.json(CouponBody::new(&issued.coupon, &issued.policy, now)))
}

/// Body of `POST /api/coupons/direct-issue`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectIssueBody {
    #[schema(required = true, nullable = false, value_type = i64, minimum = 1)]
    #[serde(default, deserialize_with = "crate::wire::whole_number")]
    coupon_policy_id: Option<i64>,
    #[schema(required = true, nullable = false, value_type = Vec<i64>, min_items = 1, max_items = 1000)]
    #[serde(default, deserialize_with = "crate::wire::whole_numbers")]
    user_ids: Option<Vec<i64>>,
    #[schema(required = true, nullable = false, value_type = String, min_length = 1, max_length = 100, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    issued_by: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectIssueResult {
    user_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    coupon_id: Option<i64>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<ErrorCode>,
}

impl DirectIssueResult {
    fn issued(user: UserId, coupon: CouponId) -> Self {
        Self { user_id: user.get(), coupon_id: Some(coupon.get()), status: "SUCCESS", error_code: None }
    }
}

/// The coupons an earlier run of this direct issue committed (user id → coupon id), from the
/// parts stored under its idempotency key.
fn issued_before(parts: &[Vec<u8>]) -> HashMap<i64, i64> {
    parts
        .iter()
        .filter_map(|part| serde_json::from_slice::<serde_json::Value>(part).ok())
        .filter_map(|part| Some((part.get("userId")?.as_i64()?, part.get("couponId")?.as_i64()?)))
        .collect()
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectIssueSummary {
    total_requested: usize,
    success_count: usize,
    failure_count: usize,
    results: Vec<DirectIssueResult>,
}

#[utoipa::path(post, path = "/api/coupons/direct-issue", tag = "coupons", security(("admin" = [])),
    request_body = DirectIssueBody,
    responses((status = 201, description = "Per-user results (already issued, sold out), also when some failed", body = DirectIssueSummary),
              (status = 400, description = "VALIDATION_ERROR; or the policy does not issue directly now: INVALID_ISSUE_TYPE, POLICY_INACTIVE, COUPON_ISSUE_PERIOD_NOT_STARTED, COUPON_ISSUE_PERIOD_EXPIRED", body = ErrorBody),
              (status = 401, description = "No admin token", body = ErrorBody), (status = 403, description = "Token not accepted", body = ErrorBody),
              (status = 404, description = "POLICY_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn direct_issue(
    req: HttpRequest,
    _: Admin,
    keys: Idempotency,
    state: web::Data<AppState>,
    body: web::Json<DirectIssueBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut checks = Checks::default();
    let policy = checks.required("couponPolicyId", body.coupon_policy_id);
    let raw_users = checks.required("userIds", body.user_ids).unwrap_or_default();
    if body.coupon_policy_id.is_some() && raw_users.is_empty() {
        checks.fail("userIds", "must name at least one user");
    }
    if raw_users.len() > MAX_DIRECT_USERS {
        checks.fail("userIds", format!("must name at most {MAX_DIRECT_USERS} users"));
    }
    let users: Vec<UserId> = raw_users.iter().filter_map(|&u| UserId::new(u)).collect();
    if users.len() != raw_users.len() {
        checks.fail("userIds", "every user id must be a positive integer");
    }
    let issued_by = checks.required_text("issuedBy", body.issued_by, 100);
    checks.finish()?;
    let policy = policy_id(policy.unwrap_or_default())?;
    // Each coupon is recorded under the key as it commits: a retry after a crash resumes with
    // the users not done yet and answers with the coupons issued before.
    let done = issued_before(keys.parts());
    let remaining: Vec<UserId> = users.iter().copied().filter(|u| !done.contains_key(&u.get())).collect();
    let cause = keys.cause(&req, |i: &Issued| {
        serde_json::to_vec(&DirectIssueResult::issued(i.coupon.user_id, i.coupon.id)).ok().map(Entry::Part)
    });
    let mut outcomes: HashMap<UserId, Result<IssuedCoupon, coupon_domain::issue::IssueError>> =
        if remaining.is_empty() {
            HashMap::new()
        } else {
            state.issuing.direct(policy, &remaining, &cause).await?.into_iter().collect()
        };
    let mut seen = HashSet::with_capacity(users.len());
    let results: Vec<DirectIssueResult> = users
        .iter()
        .filter(|u| seen.insert(**u))
        .filter_map(|&user| {
            if let Some(&coupon) = done.get(&user.get()) {
                return CouponId::new(coupon).map(|c| DirectIssueResult::issued(user, c));
            }
            Some(match outcomes.remove(&user)? {
                Ok(coupon) => DirectIssueResult::issued(user, coupon.id),
                Err(e) => DirectIssueResult {
                    user_id: user.get(),
                    coupon_id: None,
                    status: "FAILED",
                    error_code: Some(ApiError::from(e).code),
                },
            })
        })
        .collect();
    let success_count = results.iter().filter(|r| r.status == "SUCCESS").count();
    metrics::counter!("coupon_issued_total", "issue_type" => DistributionType::Direct.as_str())
        .increment(success_count as u64);
    tracing::info!(
        policy.id = %policy,
        issued_by = issued_by.as_deref().unwrap_or_default(),
        requested = results.len(),
        succeeded = success_count,
        "direct issue"
    );
    Ok(HttpResponse::Created().json(DirectIssueSummary {
        total_requested: results.len(),
        success_count,
        failure_count: results.len() - success_count,
        results,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CodeCheckBody {
    coupon_code: String,
    valid: bool,
    message: &'static str,
}

#[utoipa::path(get, path = "/api/coupons/validate/{couponCode}", tag = "coupons", security(("user" = [])),
    params(("couponCode" = String, Path, description = "The code as typed; trimmed, case-insensitive")),
    responses((status = 200, description = "Whether the code can be redeemed now (unknown codes are valid: false)", body = CodeCheckBody),
              (status = 400, description = "INVALID_REQUEST: the path is not text", body = ErrorBody),
              (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
              (status = 403, description = "ACCESS_BLOCKED", body = ErrorBody),
              (status = 429, description = "RATE_LIMITED: more than COUPON_VALIDATE_PER_MINUTE checks", body = ErrorBody)))]
pub(crate) async fn validate(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let rate = state.guard.admit_validate(caller.0).await?;
    let attempt = CodeCaller { user: caller.0, address: state.proxies.client_address(&req) };
    let code = code.into_inner();
    let lookup = state.policies.check_code(&code);
    let check = state.guard.code_attempt(attempt, lookup, |c| c.as_ref().is_ok_and(|c| c.unknown)).await??;
    let mut response = HttpResponse::Ok();
    for header in rate.iter().flat_map(rate_headers) {
        response.insert_header(header);
    }
    Ok(response.json(CodeCheckBody { coupon_code: check.code, valid: check.valid, message: check.message }))
}
