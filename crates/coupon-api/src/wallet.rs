//! The user's wallet (SPEC §5), the daily statistics and the admin's "run a job now".

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use chrono::{Datelike, Days, NaiveDate};
use coupon_domain::clock::SUPPORTED_YEARS;
use coupon_domain::id::{CouponId, PolicyId, UserId};
use coupon_domain::jobs::{JobName, JobOutcome, Trigger};
use coupon_domain::wallet::{DailyStatistics, WalletFilter};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Admin, Caller, Viewer};
use crate::coupons::CouponBody;
use crate::error::{ApiError, ErrorBody, ErrorCode, FieldError};
use crate::idempotency::{Who, keyed};
use crate::policies::PolicyBody;
use crate::state::AppState;
use crate::wire::{coupon_id, coupon_not_found, instant, page_limit};
use coupon_http::resource;

/// Longest range of `GET /api/statistics/daily`.
const MAX_DAYS: u64 = 366;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/coupons/users/{userId}", "GET").route(web::get().to(list)))
        .service(resource("/api/admin/users/{userId}/coupons", "GET").route(web::get().to(admin_list)))
        // Before `{couponId}`, which would take the word for an id.
        .service(resource("/api/coupons/catalogue", "GET").route(web::get().to(catalogue)))
        .service(resource("/api/coupons/{couponId}", "GET").route(web::get().to(coupon)))
        .service(resource("/api/coupons/users/{userId}/expiring", "GET").route(web::get().to(expiring)))
        .service(resource("/api/coupons/users/{userId}/statistics", "GET").route(web::get().to(summary)))
        .service(resource("/api/statistics/daily", "GET").route(web::get().to(daily)))
        .service(resource("/api/admin/jobs", "GET").route(web::get().to(list_jobs)))
        .service(
            resource("/api/admin/jobs/{name}/run", "POST").route(keyed(Who::Admin, web::post().to(run_job))),
        );
}

fn field(name: &str, message: impl Into<String>) -> ApiError {
    ApiError::validation(vec![FieldError { field: name.into(), message: message.into() }])
}

/// The path's user, who must be the caller.
fn owner(caller: Caller, raw: i64) -> Result<UserId, ApiError> {
    let user = UserId::new(raw).ok_or_else(|| field("userId", "must be a positive integer"))?;
    caller.must_be(user)?;
    Ok(user)
}

#[derive(Debug, Deserialize)]
pub struct WalletQuery {
    /// AVAILABLE, UNUSED, RESERVED, USED or EXPIRED; all coupons when absent.
    status: Option<String>,
    /// `nextCursor` of the previous page.
    cursor: Option<i64>,
    /// Page size, 1 to 100 (default 20).
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalletPageBody {
    coupons: Vec<CouponBody>,
    next_cursor: Option<i64>,
    has_more: bool,
}

#[utoipa::path(get, path = "/api/coupons/users/{userId}", tag = "wallet", security(("user" = [])), operation_id = "listUserCoupons",
    params(("userId" = i64, Path, minimum = 1, description = "Must equal X-User-Id"),
        ("status" = Option<WalletFilterName>, Query, description = "AVAILABLE, UNUSED, RESERVED, USED or EXPIRED; all coupons when absent"),
        ("cursor" = Option<i64>, Query, minimum = 1, description = "nextCursor of the previous page"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Page size, 1 to 100 (default 20)")),
    responses(
        (status = 200, description = "The user's coupons, newest first", body = WalletPageBody),
        (status = 400, description = "VALIDATION_ERROR", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "UNAUTHORIZED_COUPON_ACCESS", body = ErrorBody)))]
pub(crate) async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    user: web::Path<i64>,
    query: web::Query<WalletQuery>,
) -> Result<HttpResponse, ApiError> {
    let user = owner(caller, user.into_inner())?;
    page(&state, user, query.into_inner()).await
}

#[utoipa::path(get, path = "/api/admin/users/{userId}/coupons", tag = "support", security(("admin" = [])), operation_id = "adminListUserCoupons",
    params(("userId" = i64, Path, minimum = 1, description = "The user whose wallet support looks at"),
        ("status" = Option<WalletFilterName>, Query, description = "AVAILABLE, UNUSED, RESERVED, USED or EXPIRED; all coupons when absent"),
        ("cursor" = Option<i64>, Query, minimum = 1, description = "nextCursor of the previous page"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Page size, 1 to 100 (default 20)")),
    responses(
        (status = 200, description = "The user's coupons, newest first, as the user sees them", body = WalletPageBody,
            example = json!({"coupons": [{"couponId": 41, "policyId": 7, "userId": 1001, "couponName": "Black Friday 10%",
                "couponCode": null, "discountType": "PERCENTAGE", "discountValue": 10, "minimumOrderAmount": 30000,
                "maxDiscountAmount": 5000, "status": "RESERVED", "issuedAt": "2024-11-29T00:00:03Z",
                "expiryDate": "2024-12-29T14:59:59Z", "usedAt": null, "reservationId": "R-9001", "orderId": "O-77",
                "discountAmount": 5000}], "nextCursor": 41, "hasMore": true})),
        (status = 400, description = "VALIDATION_ERROR", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: no admin token", body = ErrorBody),
        (status = 403, description = "UNAUTHORIZED_COUPON_ACCESS: the token is not accepted", body = ErrorBody)))]
pub(crate) async fn admin_list(
    _: Admin,
    state: web::Data<AppState>,
    user: web::Path<i64>,
    query: web::Query<WalletQuery>,
) -> Result<HttpResponse, ApiError> {
    let user = UserId::new(user.into_inner()).ok_or_else(|| field("userId", "must be a positive integer"))?;
    page(&state, user, query.into_inner()).await
}

/// One page of `user`'s wallet.
async fn page(state: &AppState, user: UserId, query: WalletQuery) -> Result<HttpResponse, ApiError> {
    let filter = match query.status.as_deref() {
        None => WalletFilter::All,
        Some(raw) => WalletFilter::parse(raw)
            .ok_or_else(|| field("status", "must be AVAILABLE, UNUSED, RESERVED, USED or EXPIRED"))?,
    };
    let cursor = query
        .cursor
        .map(|c| CouponId::new(c).ok_or_else(|| field("cursor", "must be a positive integer")))
        .transpose()?;
    let limit = page_limit(query.limit, 20, 100)?;
    let now = state.clock.now();
    let page = state.wallet.page(user, filter, cursor, limit, now).await?;
    Ok(HttpResponse::Ok().json(WalletPageBody {
        coupons: page.coupons.iter().map(|(coupon, policy)| CouponBody::new(coupon, policy, now)).collect(),
        next_cursor: page.next_cursor.map(CouponId::get),
        has_more: page.has_more,
    }))
}

#[utoipa::path(get, path = "/api/coupons/{couponId}", tag = "wallet", security(("user" = []), ("admin" = [])), operation_id = "getCoupon",
    params(("couponId" = i64, Path, minimum = 1, description = "The coupon; a user sees only their own")),
    responses(
        (status = 200, description = "The coupon as its owner sees it (a client whose download timed out learns here what happened)", body = CouponBody,
            example = json!({"couponId": 41, "policyId": 7, "userId": 1001, "couponName": "Black Friday 10%",
                "couponCode": null, "discountType": "PERCENTAGE", "discountValue": 10, "minimumOrderAmount": 30000,
                "maxDiscountAmount": 5000, "status": "ISSUED", "issuedAt": "2024-11-29T00:00:03Z",
                "expiryDate": "2024-12-29T14:59:59Z", "usedAt": null, "reservationId": null, "orderId": null,
                "discountAmount": null})),
        (status = 400, description = "INVALID_REQUEST: couponId is not an integer", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "UNAUTHORIZED_COUPON_ACCESS: the admin token is not accepted", body = ErrorBody),
        (status = 404, description = "COUPON_NOT_FOUND: no such coupon, or another user's", body = ErrorBody)))]
pub(crate) async fn coupon(
    viewer: Viewer,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = coupon_id(id.into_inner())?;
    // Another user's coupon is answered as a missing one: its existence is not the caller's
    // business.
    let (coupon, policy) = state
        .wallet
        .coupon(id)
        .await?
        .filter(|(coupon, _)| viewer.sees(coupon.user_id))
        .ok_or_else(coupon_not_found)?;
    Ok(HttpResponse::Ok().json(CouponBody::new(&coupon, &policy, state.clock.now())))
}

#[derive(Debug, Deserialize)]
pub struct CatalogueQuery {
    /// `nextCursor` of the previous page.
    cursor: Option<i64>,
    /// Page size, 1 to 100 (default 20).
    limit: Option<i64>,
}

/// A policy the user may download now.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogueEntryBody {
    #[serde(flatten)]
    policy: PolicyBody,
    /// Coupons left under the cap; null when unlimited.
    remaining_count: Option<u32>,
    sold_out: bool,
    /// Coupons of this policy the caller holds.
    held: u32,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CataloguePageBody {
    policies: Vec<CatalogueEntryBody>,
    next_cursor: Option<i64>,
    has_more: bool,
}

#[utoipa::path(get, path = "/api/coupons/catalogue", tag = "coupons", security(("user" = [])), operation_id = "getCatalogue",
    params(("cursor" = Option<i64>, Query, minimum = 1, description = "nextCursor of the previous page"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Page size, 1 to 100 (default 20)")),
    responses(
        (status = 200, description = "Active DOWNLOAD and FIRST_COME policies within their window, newest first, with what is left and what the caller holds", body = CataloguePageBody,
            example = json!({"policies": [{"id": 7, "couponName": "Black Friday 10%", "couponCode": null, "description": null,
                "discountType": "PERCENTAGE", "discountValue": 10, "minimumOrderAmount": 30000, "maxDiscountAmount": 5000,
                "distributionType": "FIRST_COME", "maxIssueCount": 1000, "currentIssueCount": 588, "maxIssuePerUser": 1,
                "validDays": 30, "validFrom": "2024-11-29T00:00:00Z", "validUntil": "2024-11-30T00:00:00Z", "isActive": true,
                "createdAt": "2024-11-20T09:00:00Z", "updatedAt": "2024-11-20T09:00:00Z",
                "remainingCount": 412, "soldOut": false, "held": 0}], "nextCursor": null, "hasMore": false})),
        (status = 400, description = "VALIDATION_ERROR", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody)))]
pub(crate) async fn catalogue(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<CatalogueQuery>,
) -> Result<HttpResponse, ApiError> {
    let cursor = query
        .cursor
        .map(|c| PolicyId::new(c).ok_or_else(|| field("cursor", "must be a positive integer")))
        .transpose()?;
    let limit = page_limit(query.limit, 20, 100)?;
    let page = state.wallet.catalogue(caller.0, cursor, limit, state.clock.now()).await?;
    Ok(HttpResponse::Ok().json(CataloguePageBody {
        policies: page
            .entries
            .iter()
            .map(|entry| CatalogueEntryBody {
                policy: PolicyBody::from(&entry.policy),
                remaining_count: entry.policy.remaining(),
                sold_out: entry.sold_out(),
                held: entry.held,
            })
            .collect(),
        next_cursor: page.next_cursor.map(PolicyId::get),
        has_more: page.has_more,
    }))
}

#[derive(Debug, Deserialize)]
pub struct ExpiringQuery {
    /// Coupons whose date ends within this many days, 1 to 365 (default 7).
    days: Option<i64>,
    /// At most this many, 1 to 100 (default 10).
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpiringBody {
    days: u32,
    coupons: Vec<CouponBody>,
}

#[utoipa::path(get, path = "/api/coupons/users/{userId}/expiring", tag = "wallet", security(("user" = [])),
    params(("userId" = i64, Path, minimum = 1, description = "Must equal X-User-Id"),
        ("days" = Option<i64>, Query, minimum = 1, maximum = 365, description = "Within this many days, 1 to 365 (default 7)"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "At most this many, 1 to 100 (default 10)")),
    responses(
        (status = 200, description = "Usable coupons about to expire, soonest first", body = ExpiringBody),
        (status = 400, description = "VALIDATION_ERROR", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "UNAUTHORIZED_COUPON_ACCESS", body = ErrorBody)))]
pub(crate) async fn expiring(
    caller: Caller,
    state: web::Data<AppState>,
    user: web::Path<i64>,
    query: web::Query<ExpiringQuery>,
) -> Result<HttpResponse, ApiError> {
    let user = owner(caller, user.into_inner())?;
    let days = match query.days {
        None => 7,
        Some(d @ 1..=365) => u32::try_from(d).unwrap_or(7),
        Some(_) => return Err(field("days", "must be between 1 and 365")),
    };
    let limit = page_limit(query.limit, 10, 100)?;
    let now = state.clock.now();
    let until = now + chrono::Duration::days(i64::from(days));
    let coupons = state.wallet.expiring(user, now, until, limit).await?;
    Ok(HttpResponse::Ok().json(ExpiringBody {
        days,
        coupons: coupons.iter().map(|(coupon, policy)| CouponBody::new(coupon, policy, now)).collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalletSummaryBody {
    user_id: i64,
    total_coupons: u64,
    available_coupons: u64,
    used_coupons: u64,
    expired_coupons: u64,
    #[schema(value_type = f64)]
    total_saved_amount: Decimal,
}

#[utoipa::path(get, path = "/api/coupons/users/{userId}/statistics", tag = "wallet", security(("user" = [])),
    params(("userId" = i64, Path, minimum = 1, description = "Must equal X-User-Id")),
    responses(
        (status = 200, description = "The user's totals (revoked coupons count nowhere)", body = WalletSummaryBody),
        (status = 400, description = "INVALID_REQUEST: userId is not an integer", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "UNAUTHORIZED_COUPON_ACCESS", body = ErrorBody)))]
pub(crate) async fn summary(
    caller: Caller,
    state: web::Data<AppState>,
    user: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let user = owner(caller, user.into_inner())?;
    let s = state.wallet.summary(user, state.clock.now()).await?;
    Ok(HttpResponse::Ok().json(WalletSummaryBody {
        user_id: user.get(),
        total_coupons: s.total,
        available_coupons: s.available,
        used_coupons: s.used,
        expired_coupons: s.expired,
        total_saved_amount: s.total_saved.amount().normalize(),
    }))
}

#[derive(Debug, Deserialize)]
pub struct DailyQuery {
    /// First day, `YYYY-MM-DD` (default: six days before `to`).
    from: Option<String>,
    /// Last day, `YYYY-MM-DD` (default: today in COUPON_TIMEZONE).
    to: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayBody {
    date: String,
    total_issued: u64,
    total_used: u64,
    total_reserved: u64,
    total_expired: u64,
    /// `"0"` to `"23"`: coupons issued in each hour of the day.
    issue_by_hour: BTreeMap<String, u64>,
    usage_by_hour: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DailyBody {
    days: Vec<DayBody>,
}

fn buckets(hours: &[u64; 24]) -> BTreeMap<String, u64> {
    hours.iter().enumerate().map(|(h, n)| (h.to_string(), *n)).collect()
}

impl From<&DailyStatistics> for DayBody {
    fn from(d: &DailyStatistics) -> Self {
        Self {
            date: d.date.to_string(),
            total_issued: d.total_issued,
            total_used: d.total_used,
            total_reserved: d.total_reserved,
            total_expired: d.total_expired,
            issue_by_hour: buckets(&d.issue_by_hour),
            usage_by_hour: buckets(&d.usage_by_hour),
        }
    }
}

/// A date `YYYY-MM-DD` in the years the service supports (SPEC §10).
fn date(name: &str, raw: Option<&str>) -> Result<Option<NaiveDate>, ApiError> {
    raw.map(|raw| {
        NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .ok()
            .filter(|d| SUPPORTED_YEARS.contains(&d.year()))
            .ok_or_else(|| field(name, "must be a date YYYY-MM-DD in the years 2000 to 9999"))
    })
    .transpose()
}

#[utoipa::path(get, path = "/api/statistics/daily", tag = "statistics", security(("admin" = [])),
    params(("from" = Option<String>, Query, pattern = "^(2[0-9]{3}|[3-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$", description = "First day, YYYY-MM-DD in the years 2000 to 9999 (default: six days before to); at most 366 days before to"),
        ("to" = Option<String>, Query, pattern = "^(2[0-9]{3}|[3-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$", description = "Last day, YYYY-MM-DD in the years 2000 to 9999 (default: today in COUPON_TIMEZONE)")),
    responses(
        (status = 200, description = "Rows kept by the statistics job, by date", body = DailyBody),
        (status = 400, description = "VALIDATION_ERROR", body = ErrorBody),
        (status = 401, description = "No admin token", body = ErrorBody),
        (status = 403, description = "Token not accepted", body = ErrorBody)))]
pub(crate) async fn daily(
    _: Admin,
    state: web::Data<AppState>,
    query: web::Query<DailyQuery>,
) -> Result<HttpResponse, ApiError> {
    let today = state.clock.now().with_timezone(&state.zone).date_naive();
    let to = date("to", query.to.as_deref())?.unwrap_or(today);
    let from = date("from", query.from.as_deref())?
        .unwrap_or_else(|| to.checked_sub_days(Days::new(6)).unwrap_or(to));
    if from > to {
        return Err(field("from", "must not be after to"));
    }
    if from.checked_add_days(Days::new(MAX_DAYS)).is_some_and(|limit| to >= limit) {
        return Err(field("to", format!("the range is at most {MAX_DAYS} days")));
    }
    let days = state.wallet.daily(from, to).await?;
    Ok(HttpResponse::Ok().json(DailyBody { days: days.iter().map(DayBody::from).collect() }))
}

/// The values of the wallet's `status` filter (the parameter is read as text, so that another
/// value gets a field error; this type only documents the values).
#[derive(ToSchema)]
#[expect(dead_code, clippy::upper_case_acronyms, reason = "documentation only, named as on the wire")]
pub(crate) enum WalletFilterName {
    AVAILABLE,
    UNUSED,
    RESERVED,
    USED,
    EXPIRED,
}

/// The jobs that `POST /api/admin/jobs/{name}/run` runs (documentation only).
#[derive(ToSchema)]
#[expect(dead_code, reason = "documentation only")]
pub(crate) enum JobNameValue {
    #[schema(rename = "reservation-timeout")]
    ReservationTimeout,
    #[schema(rename = "expiry")]
    Expiry,
    #[schema(rename = "statistics")]
    Statistics,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRunBody {
    job: &'static str,
    trigger: &'static str,
    outcome: &'static str,
    affected: u64,
    batches: u32,
    started_at: String,
    finished_at: String,
}

/// Runs kept per job in `GET /api/admin/jobs`.
const JOB_HISTORY: u32 = 10;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobsBody {
    jobs: Vec<JobHistoryBody>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobHistoryBody {
    #[schema(value_type = JobNameValue)]
    name: &'static str,
    /// Newest first, at most 10.
    last_runs: Vec<PastRunBody>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PastRunBody {
    /// SCHEDULE (cron) or MANUAL (run by an admin).
    trigger: &'static str,
    /// SUCCEEDED or FAILED (the cause is in the scheduler's log).
    outcome: &'static str,
    affected: u64,
    started_at: String,
    finished_at: String,
}

#[utoipa::path(get, path = "/api/admin/jobs", tag = "statistics", security(("admin" = [])),
    responses(
        (status = 200, description = "Each job with its latest runs", body = JobsBody),
        (status = 401, description = "No admin token", body = ErrorBody),
        (status = 403, description = "Token not accepted", body = ErrorBody)))]
pub(crate) async fn list_jobs(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let history = state.jobs.history(JOB_HISTORY).await?;
    let jobs = history
        .into_iter()
        .map(|(job, runs)| JobHistoryBody {
            name: job.as_str(),
            last_runs: runs
                .into_iter()
                .map(|run| PastRunBody {
                    trigger: run.trigger.as_str(),
                    outcome: if run.succeeded { "SUCCEEDED" } else { "FAILED" },
                    affected: run.affected,
                    started_at: instant(run.started_at),
                    finished_at: instant(run.finished_at),
                })
                .collect(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(JobsBody { jobs }))
}

#[utoipa::path(post, path = "/api/admin/jobs/{name}/run", tag = "statistics", security(("admin" = [])),
    params(("name" = JobNameValue, Path, description = "reservation-timeout, expiry or statistics")),
    responses(
        (status = 200, description = "The run, finished", body = JobRunBody),
        (status = 401, description = "No admin token", body = ErrorBody),
        (status = 403, description = "Token not accepted", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: no such job", body = ErrorBody),
        (status = 409, description = "LOCK_ACQUISITION_FAILED: the job is running elsewhere", body = ErrorBody)))]
pub(crate) async fn run_job(
    _: Admin,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let job = JobName::parse(&name).ok_or_else(|| {
        ApiError::new(ErrorCode::NotFound, "no such job; jobs are reservation-timeout, expiry and statistics")
    })?;
    match state.jobs.run(job, Trigger::Manual).await? {
        JobOutcome::Busy => Err(ApiError::new(
            ErrorCode::LockAcquisitionFailed,
            format!("{} is running elsewhere; try again when it finishes", job.as_str()),
        )),
        JobOutcome::Ran(report) => {
            tracing::info!(job = job.as_str(), affected = report.affected, "job run by an admin");
            Ok(HttpResponse::Ok().json(JobRunBody {
                job: job.as_str(),
                trigger: report.trigger.as_str(),
                outcome: "SUCCEEDED",
                affected: report.affected,
                batches: report.batches,
                started_at: instant(report.started_at),
                finished_at: instant(report.finished_at),
            }))
        }
    }
}
