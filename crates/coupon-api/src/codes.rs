//! Unique single-use codes (SPEC §11.6): start a generation job, follow it, export the codes as
//! CSV. Redemption goes through `POST /api/coupons/download {couponCode}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use bytes::Bytes;
use coupon_domain::codes::{CodeFormat, CodeJob, CodeRecord, UniqueCodes, code_count};
use coupon_domain::id::PolicyId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Admin;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::idempotency::{Idempotency, Who, answer, keyed};
use crate::state::AppState;
use crate::wire::{Checks, instant, policy_id};
use coupon_http::resource;

/// Codes per page of an export: what the api-server holds in memory at once.
const EXPORT_PAGE: u32 = 5_000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/coupon-policies/{id}/codes", "GET, POST")
            .route(keyed(Who::Admin, web::post().to(start)))
            .route(web::get().to(export)),
    )
    .service(resource("/api/coupon-policies/{id}/codes/jobs", "GET").route(web::get().to(jobs)))
    .service(resource("/api/coupon-policies/{id}/codes/jobs/{jobId}", "GET").route(web::get().to(job)));
}

/// Body of `POST /api/coupon-policies/{id}/codes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartBody {
    /// How many codes, 1 to 10,000,000.
    #[schema(required = true, nullable = false, value_type = i64, minimum = 1, maximum = 10000000)]
    #[serde(default, deserialize_with = "crate::wire::whole_number")]
    count: Option<i64>,
    /// Put before each code: at most 10 of `A-Z 0-9`.
    #[schema(value_type = Option<String>, pattern = "^[A-Z0-9]{0,10}$")]
    prefix: Option<String>,
    /// Random characters after the prefix, 8 to 20 (default 12: 60 bits).
    #[schema(value_type = Option<i64>, minimum = 8, maximum = 20)]
    #[serde(default, deserialize_with = "crate::wire::whole_number")]
    length: Option<i64>,
}

/// A started job.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartedBody {
    job_id: i64,
}

/// A job's progress.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobBody {
    job_id: i64,
    /// RUNNING, DONE or FAILED.
    state: &'static str,
    generated: u32,
    total: u32,
}

impl From<&CodeJob> for JobBody {
    fn from(j: &CodeJob) -> Self {
        Self { job_id: j.id, state: j.state.as_str(), generated: j.generated, total: j.total }
    }
}

#[utoipa::path(post, path = "/api/coupon-policies/{id}/codes", tag = "policies", security(("admin" = [])),
    params(("id" = i64, Path, minimum = 1, description = "A CODE policy with codeMode UNIQUE")),
    request_body = StartBody,
    responses(
        (status = 202, description = "Generating in the background; follow the job", body = StartedBody),
        (status = 400, description = "VALIDATION_ERROR, INVALID_ISSUE_TYPE (not a CODE policy with codeMode UNIQUE)", body = ErrorBody),
        (status = 401, description = "No admin token", body = ErrorBody),
        (status = 403, description = "Token not accepted", body = ErrorBody),
        (status = 404, description = "POLICY_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn start(
    _: Admin,
    keys: Idempotency,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<StartBody>,
) -> Result<HttpResponse, ApiError> {
    let policy = policy_id(id.into_inner())?;
    let body = body.into_inner();
    let mut checks = Checks::default();
    let count = checks
        .required("count", body.count)
        .and_then(|n| code_count(n).map_err(|e| checks.fail(e.field, e.message)).ok());
    let format = CodeFormat::new(body.prefix.as_deref(), body.length)
        .map_err(|e| checks.fail(e.field, e.message))
        .ok();
    checks.finish()?;
    let (Some(count), Some(format)) = (count, format) else {
        return Err(ApiError::new(ErrorCode::ValidationError, "Request validation failed"));
    };
    let receipt = keys.receipt(|j: &CodeJob| answer(StatusCode::ACCEPTED, &StartedBody { job_id: j.id }));
    let job = state.codes.start(policy, count, format, receipt.as_ref()).await?;
    tracing::info!(job.id = job.id, policy.id = %policy, codes = count, "unique code generation started");
    let (codes, started) = (state.codes.clone(), job.clone());
    actix_web::rt::spawn(async move { codes.run(started).await });
    Ok(HttpResponse::Accepted().json(StartedBody { job_id: job.id }))
}

#[utoipa::path(get, path = "/api/coupon-policies/{id}/codes/jobs/{jobId}", tag = "policies", security(("admin" = [])),
    params(("id" = i64, Path, minimum = 1, description = "Policy id"), ("jobId" = i64, Path, minimum = 1, description = "Job id")),
    responses(
        (status = 200, description = "The job's progress", body = JobBody),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "No admin token", body = ErrorBody),
        (status = 403, description = "Token not accepted", body = ErrorBody),
        (status = 404, description = "POLICY_NOT_FOUND, or NOT_FOUND: no such job of this policy", body = ErrorBody)))]
pub(crate) async fn job(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (policy, job) = path.into_inner();
    let policy = existing_policy(&state, policy).await?;
    let found = state.codes.job(policy, job).await?;
    let job =
        found.ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no code job of this policy has this id"))?;
    Ok(HttpResponse::Ok().json(JobBody::from(&job)))
}

/// The policy of a path's `{id}`, or 404 `POLICY_NOT_FOUND` when no policy has it.
async fn existing_policy(state: &AppState, raw: i64) -> Result<PolicyId, ApiError> {
    let policy = policy_id(raw)?;
    state.policies.get(policy).await?.ok_or_else(crate::wire::policy_not_found)?;
    Ok(policy)
}

/// Jobs listed by `GET …/codes/jobs`.
const JOB_LIST: u32 = 50;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobsBody {
    /// Newest first, at most 50.
    jobs: Vec<JobBody>,
}

#[utoipa::path(get, path = "/api/coupon-policies/{id}/codes/jobs", tag = "policies", security(("admin" = [])),
    params(("id" = i64, Path, minimum = 1, description = "Policy id")),
    responses(
        (status = 200, description = "The policy's generation jobs, newest first", body = JobsBody),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "No admin token", body = ErrorBody),
        (status = 403, description = "Token not accepted", body = ErrorBody),
        (status = 404, description = "POLICY_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn jobs(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let policy = existing_policy(&state, path.into_inner()).await?;
    let jobs = state.codes.jobs(policy, JOB_LIST).await?;
    Ok(HttpResponse::Ok().json(JobsBody { jobs: jobs.iter().map(JobBody::from).collect() }))
}

/// The values of `format` (documentation only: the query is read as text, so that another value
/// gets a field error naming it).
#[derive(ToSchema)]
#[expect(dead_code, non_camel_case_types, reason = "documentation only, named as on the wire")]
pub(crate) enum ExportFormat {
    csv,
}

#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    /// `csv` (the one format).
    format: Option<String>,
}

/// One CSV line of a code (`code,status,couponId,userId,redeemedAt`).
fn csv_line(record: &CodeRecord, out: &mut String) {
    use std::fmt::Write as _;
    let status = if record.redeemed { "REDEEMED" } else { "AVAILABLE" };
    let _ = write!(out, "{},{status},", record.code);
    if let Some(coupon) = record.coupon_id {
        let _ = write!(out, "{coupon}");
    }
    out.push(',');
    if let Some(user) = record.user_id {
        let _ = write!(out, "{user}");
    }
    out.push(',');
    if let Some(at) = record.redeemed_at {
        out.push_str(&instant(at));
    }
    out.push('\n');
}

/// The export's pages as a stream: each read when the client has taken the one before.
fn pages(
    codes: UniqueCodes,
    policy: PolicyId,
) -> impl futures::Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
    let header = Some(Bytes::from_static(b"code,status,couponId,userId,redeemedAt\n"));
    futures::stream::unfold((header, Some(String::new())), move |(header, after)| {
        let codes = codes.clone();
        async move {
            if let Some(header) = header {
                return Some((Ok(header), (None, after)));
            }
            let after = after?;
            let cursor = (!after.is_empty()).then_some(after.as_str());
            match codes.export_page(policy, cursor, EXPORT_PAGE).await {
                Ok(records) if records.is_empty() => None,
                Ok(records) => {
                    let mut text = String::with_capacity(records.len() * 64);
                    for record in &records {
                        csv_line(record, &mut text);
                    }
                    let next = (records.len() == EXPORT_PAGE as usize)
                        .then(|| records.last().map(|r| r.code.clone()))
                        .flatten();
                    Some((Ok(Bytes::from(text)), (None, next)))
                }
                Err(e) => {
                    // The status line is gone: the client sees the body end early.
                    tracing::warn!(policy.id = %policy, error = %e, "code export interrupted");
                    Some((Err(actix_web::error::ErrorServiceUnavailable("export interrupted")), (None, None)))
                }
            }
        }
    })
}

#[utoipa::path(get, path = "/api/coupon-policies/{id}/codes", tag = "policies", security(("admin" = [])),
    params(("id" = i64, Path, minimum = 1, description = "Policy id"), ("format" = Option<ExportFormat>, Query, description = "csv (the one format; the default)")),
    responses(
        (status = 200, description = "Every code of the policy in code order, streamed: `code,status,couponId,userId,redeemedAt`", content_type = "text/csv", body = String),
        (status = 400, description = "VALIDATION_ERROR: format must be csv", body = ErrorBody),
        (status = 401, description = "No admin token", body = ErrorBody),
        (status = 403, description = "Token not accepted", body = ErrorBody),
        (status = 404, description = "POLICY_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn export(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let policy = policy_id(id.into_inner())?;
    if query.format.as_deref().is_some_and(|f| f != "csv") {
        let mut checks = Checks::default();
        checks.fail("format", "must be csv");
        checks.finish()?;
    }
    state.policies.get(policy).await?.ok_or_else(crate::wire::policy_not_found)?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(("Content-Disposition", format!("attachment; filename=\"policy-{policy}-codes.csv\"")))
        .streaming(pages(state.codes.clone(), policy)))
}
