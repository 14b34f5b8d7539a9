//! Admin endpoints of coupon policies (SPEC §5): create, read, list, change, deactivate, set the
//! cap, statistics.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use coupon_domain::discount::{DiscountRule, DiscountType};
use coupon_domain::id::PolicyId;
use coupon_domain::money::Money;
use coupon_domain::policy::{
    CapChange, CouponCode, DistributionType, IssuanceWindow, NewPolicy, Policy, PolicyChange,
    PolicyStatistics,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Admin;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::idempotency::{Idempotency, Who, answer, keyed};
use crate::state::AppState;
use crate::wire::{Checks, correlation_id, instant, maybe_instant, page_limit, policy_id, policy_not_found};
use coupon_http::resource;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/coupon-policies", "GET, POST")
            .route(keyed(Who::Admin, web::post().to(create)))
            .route(web::get().to(list)),
    )
    .service(
        resource("/api/coupon-policies/{id}", "GET, PATCH, DELETE")
            .route(web::get().to(get))
            .route(keyed(Who::Admin, web::patch().to(change)))
            .route(keyed(Who::Admin, web::delete().to(deactivate))),
    )
    .service(
        resource("/api/coupon-policies/{id}/remaining-quantity", "PATCH")
            .route(keyed(Who::Admin, web::patch().to(set_cap))),
    )
    .service(resource("/api/coupon-policies/{id}/statistics", "GET").route(web::get().to(statistics)));
}

/// Body of `POST /api/coupon-policies`. Every field is optional here so that a missing one is
/// reported as a field error, not as unreadable JSON.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatePolicyBody {
    #[schema(required = true, nullable = false, value_type = String, min_length = 1, max_length = 100, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    coupon_name: Option<String>,
    /// Required for CODE policies; trimmed and upper-cased.
    #[schema(value_type = Option<String>, pattern = "^\\s*[A-Za-z0-9_-]{1,50}\\s*$")]
    coupon_code: Option<String>,
    #[schema(value_type = Option<String>, max_length = 1000, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    description: Option<String>,
    #[schema(required = true, nullable = false, value_type = DiscountTypeName, inline)]
    discount_type: Option<String>,
    /// FIXED_AMOUNT: above 0; PERCENTAGE: above 0 and at most 100. At most two decimal places.
    #[schema(required = true, nullable = false, value_type = f64, minimum = -9999999999999.99, maximum = 9999999999999.99)]
    discount_value: Option<Decimal>,
    /// At least 0, at most two decimal places.
    #[schema(value_type = Option<f64>, minimum = -9999999999999.99, maximum = 9999999999999.99)]
    minimum_order_amount: Option<Decimal>,
    /// Above 0, at most two decimal places.
    #[schema(value_type = Option<f64>, minimum = -9999999999999.99, maximum = 9999999999999.99)]
    max_discount_amount: Option<Decimal>,
    #[schema(required = true, nullable = false, value_type = DistributionTypeName, inline)]
    distribution_type: Option<String>,
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 2147483647)]
    #[serde(default, deserialize_with = "crate::wire::whole_number")]
    max_issue_count: Option<i64>,
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "crate::wire::whole_number")]
    max_issue_per_user: Option<i64>,
    #[schema(required = true, nullable = false, value_type = i64, minimum = 1, maximum = 36500)]
    #[serde(default, deserialize_with = "crate::wire::whole_number")]
    valid_days: Option<i64>,
    /// Years 2000 to 9999; before `validUntil`.
    #[schema(required = true, nullable = false, value_type = String, format = DateTime, pattern = "^(2[0-9]{3}|[3-9][0-9]{3})-")]
    valid_from: Option<DateTime<Utc>>,
    #[schema(required = true, nullable = false, value_type = String, format = DateTime, pattern = "^(2[0-9]{3}|[3-9][0-9]{3})-")]
    valid_until: Option<DateTime<Utc>>,
    #[schema(value_type = Option<bool>)]
    is_active: Option<bool>,
    /// May share an order with other stackable coupons (default false, SPEC §11.4).
    #[schema(value_type = Option<bool>)]
    stackable: Option<bool>,
    /// The most the policy's coupons may give away (held or used); above 0, at most two decimal
    /// places; absent = no budget (SPEC §11.5). Only raised later.
    #[schema(value_type = Option<f64>, minimum = -9999999999999.99, maximum = 9999999999999.99)]
    budget_amount: Option<Decimal>,
}

/// The values of `discountType` (the field is read as text, so that another value gets a field
/// error naming it; this type only documents the values).
#[derive(ToSchema)]
#[expect(
    dead_code,
    clippy::upper_case_acronyms,
    non_camel_case_types,
    reason = "documentation only, named as on the wire"
)]
enum DiscountTypeName {
    FIXED_AMOUNT,
    PERCENTAGE,
}

/// The values of `distributionType` (documentation only, as [`DiscountTypeName`]).
#[derive(ToSchema)]
#[expect(
    dead_code,
    clippy::upper_case_acronyms,
    non_camel_case_types,
    reason = "documentation only, named as on the wire"
)]
enum DistributionTypeName {
    CODE,
    DOWNLOAD,
    FIRST_COME,
    EVENT,
    DIRECT,
}

impl CreatePolicyBody {
    /// Field checks first (all reported together), then the domain rules with their own codes
    /// (`INVALID_DISCOUNT_VALUE`, `INVALID_DATE_RANGE`).
    fn into_new_policy(self) -> Result<NewPolicy, ApiError> {
        let mut checks = Checks::default();
        // Bounds apply to the name as sent (what the OpenAPI document can say); it is stored
        // trimmed.
        let raw_name = checks.required("couponName", self.coupon_name);
        if raw_name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            checks.fail("couponName", "must be 1 to 100 characters, not only spaces");
        }
        checks.text("couponName", raw_name.as_deref(), 100);
        let name = raw_name.map(|n| n.trim().to_owned());
        let code = match self.coupon_code.as_deref().map(CouponCode::parse) {
            Some(Err(e)) => {
                checks.fail("couponCode", e.to_string());
                None
            }
            Some(Ok(code)) => Some(code),
            None => None,
        };
        checks.text("description", self.description.as_deref(), 1000);
        let discount_type = checks.required("discountType", self.discount_type);
        let discount_type = discount_type.and_then(|t| {
            let parsed = DiscountType::parse(&t);
            if parsed.is_none() {
                checks.fail("discountType", "must be FIXED_AMOUNT or PERCENTAGE");
            }
            parsed
        });
        let discount_value = checks.required("discountValue", self.discount_value);
        let discount_value = checks.money("discountValue", discount_value).map(Money::amount);
        let minimum_order_amount = checks.money("minimumOrderAmount", self.minimum_order_amount);
        let max_discount_amount = checks.money("maxDiscountAmount", self.max_discount_amount);
        let distribution = checks.required("distributionType", self.distribution_type).and_then(|t| {
            let parsed = DistributionType::parse(&t);
            if parsed.is_none() {
                checks.fail("distributionType", "must be CODE, DOWNLOAD, FIRST_COME, EVENT or DIRECT");
            }
            parsed
        });
        if distribution == Some(DistributionType::Code) && self.coupon_code.is_none() {
            checks.fail("couponCode", "is required for CODE policies");
        }
        let max_issue_count =
            in_range(&mut checks, "maxIssueCount", self.max_issue_count, 0, i64::from(i32::MAX));
        let per_user = in_range(&mut checks, "maxIssuePerUser", self.max_issue_per_user.or(Some(1)), 1, 1000);
        let valid_days = checks.required("validDays", self.valid_days);
        let valid_days = in_range(&mut checks, "validDays", valid_days, 1, 36_500);
        let valid_from = checks.required("validFrom", self.valid_from);
        let valid_from = checks.instant("validFrom", valid_from);
        let valid_until = checks.required("validUntil", self.valid_until);
        let valid_until = checks.instant("validUntil", valid_until);
        let budget_amount = budget(&mut checks, self.budget_amount);
        checks.finish()?;

        // Every `required` above succeeded, or `finish` returned.
        let (
            Some(name),
            Some(discount_type),
            Some(value),
            Some(distribution),
            Some(per_user),
            Some(valid_days),
            Some(from),
            Some(until),
        ) = (
            name,
            discount_type,
            discount_value,
            distribution,
            per_user,
            valid_days,
            valid_from,
            valid_until,
        )
        else {
            return Err(ApiError::new(ErrorCode::ValidationError, "Request validation failed"));
        };
        let discount = DiscountRule::new(discount_type, value, minimum_order_amount, max_discount_amount)
            .map_err(|e| ApiError::new(ErrorCode::InvalidDiscountValue, e.to_string()))?;
        let window = IssuanceWindow::new(from, until)
            .map_err(|e| ApiError::new(ErrorCode::InvalidDateRange, e.to_string()))?;
        Ok(NewPolicy {
            name,
            code,
            description: self.description,
            discount,
            distribution,
            max_issue_count: max_issue_count.and_then(|n| u32::try_from(n).ok()),
            max_issue_per_user: u16::try_from(per_user).unwrap_or(1),
            valid_days: u32::try_from(valid_days).unwrap_or(1),
            window,
            is_active: self.is_active.unwrap_or(true),
            stackable: self.stackable.unwrap_or(false),
            budget_amount,
        })
    }
}

/// A budget amount: money above 0.
fn budget(checks: &mut Checks, value: Option<Decimal>) -> Option<Money> {
    let amount = checks.money("budgetAmount", value)?;
    if amount.is_positive() {
        Some(amount)
    } else {
        checks.fail("budgetAmount", "must be above 0");
        None
    }
}

fn in_range(checks: &mut Checks, field: &str, value: Option<i64>, min: i64, max: i64) -> Option<i64> {
    match value {
        Some(v) if v < min || v > max => {
            checks.fail(field, format!("must be between {min} and {max}"));
            None
        }
        other => other,
    }
}

/// A policy on the wire (SPEC §5, policy JSON).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyBody {
    id: i64,
    coupon_name: String,
    coupon_code: Option<String>,
    description: Option<String>,
    discount_type: &'static str,
    discount_value: Decimal,
    minimum_order_amount: Decimal,
    max_discount_amount: Option<Decimal>,
    distribution_type: &'static str,
    max_issue_count: Option<u32>,
    current_issue_count: u32,
    max_issue_per_user: u16,
    valid_days: u32,
    valid_from: String,
    valid_until: String,
    is_active: bool,
    stackable: bool,
    budget_amount: Option<Decimal>,
    created_at: String,
    updated_at: String,
}

impl From<&Policy> for PolicyBody {
    fn from(p: &Policy) -> Self {
        Self {
            id: p.id.get(),
            coupon_name: p.name.clone(),
            coupon_code: p.code.as_ref().map(|c| c.as_str().to_owned()),
            description: p.description.clone(),
            discount_type: p.discount.discount_type().as_str(),
            discount_value: p.discount.value().normalize(),
            minimum_order_amount: p.discount.minimum_order_amount().amount().normalize(),
            max_discount_amount: p.discount.max_discount_amount().map(|m| m.amount().normalize()),
            distribution_type: p.distribution.as_str(),
            max_issue_count: p.max_issue_count,
            current_issue_count: p.current_issue_count,
            max_issue_per_user: p.max_issue_per_user,
            valid_days: p.valid_days,
            valid_from: instant(p.window.from()),
            valid_until: instant(p.window.until()),
            is_active: p.is_active,
            stackable: p.stackable,
            budget_amount: p.budget_amount.map(|b| b.amount().normalize()),
            created_at: instant(p.created_at),
            updated_at: instant(p.updated_at),
        }
    }
}

#[utoipa::path(post, path = "/api/coupon-policies", tag = "policies", security(("admin" = [])),
    request_body = CreatePolicyBody,
    responses((status = 201, description = "Created", body = PolicyBody), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "No admin token", body = ErrorBody), (status = 403, description = "Token not accepted", body = ErrorBody),
              (status = 409, description = "DUPLICATE_COUPON_CODE", body = ErrorBody)))]
pub(crate) async fn create(
    _: Admin,
    keys: Idempotency,
    state: web::Data<AppState>,
    body: web::Json<CreatePolicyBody>,
) -> Result<HttpResponse, ApiError> {
    let new = body.into_inner().into_new_policy()?;
    let receipt = keys.receipt(|p: &Policy| answer(StatusCode::CREATED, &PolicyBody::from(p)));
    let policy = state.policies.create(new, receipt.as_ref()).await?;
    tracing::info!(policy.id = %policy.id, "coupon policy created");
    Ok(HttpResponse::Created().json(PolicyBody::from(&policy)))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    cursor: Option<i64>,
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPage {
    policies: Vec<PolicyBody>,
    next_cursor: Option<i64>,
    has_more: bool,
}

#[utoipa::path(get, path = "/api/coupon-policies", tag = "policies", security(("admin" = [])), operation_id = "listPolicies",
    params(
        ("cursor" = Option<i64>, Query, description = "The last id of the previous page"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Page size, 1 to 100 (default 20)")
    ),
    responses((status = 200, description = "A page of policies", body = PolicyPage), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "No admin token", body = ErrorBody), (status = 403, description = "Token not accepted", body = ErrorBody)))]
pub(crate) async fn list(
    _: Admin,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(query.limit, 20, 100)?;
    let after = query.cursor.and_then(PolicyId::new);
    // One extra row says whether there is a next page.
    let mut policies = state.policies.list(after, limit + 1).await?;
    let has_more = policies.len() > limit as usize;
    policies.truncate(limit as usize);
    let next_cursor = if has_more { policies.last().map(|p| p.id.get()) } else { None };
    Ok(HttpResponse::Ok().json(PolicyPage {
        policies: policies.iter().map(PolicyBody::from).collect(),
        next_cursor,
        has_more,
    }))
}

#[utoipa::path(get, path = "/api/coupon-policies/{id}", tag = "policies", security(("admin" = [])),
    params(("id" = i64, Path, minimum = 1, description = "Policy id")),
    responses((status = 200, description = "The policy", body = PolicyBody), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "No admin token", body = ErrorBody), (status = 403, description = "Token not accepted", body = ErrorBody),
              (status = 404, description = "POLICY_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn get(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = policy_id(id.into_inner())?;
    let policy = state.policies.get(id).await?.ok_or_else(policy_not_found)?;
    Ok(HttpResponse::Ok().json(PolicyBody::from(&policy)))
}

/// Body of `PATCH /api/coupon-policies/{id}`: only the fields to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangePolicyBody {
    #[schema(value_type = Option<String>, min_length = 1, max_length = 100, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    coupon_name: Option<String>,
    #[schema(value_type = Option<String>, max_length = 1000, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    description: Option<String>,
    /// Only up.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 2147483647)]
    #[serde(default, deserialize_with = "crate::wire::whole_number")]
    max_issue_count: Option<i64>,
    /// Only later; years 2000 to 9999.
    #[schema(value_type = Option<String>, format = DateTime, pattern = "^(2[0-9]{3}|[3-9][0-9]{3})-")]
    valid_until: Option<DateTime<Utc>>,
    #[schema(value_type = Option<bool>)]
    is_active: Option<bool>,
    /// Only up, and only on a policy created with a budget.
    #[schema(value_type = Option<f64>, minimum = -9999999999999.99, maximum = 9999999999999.99)]
    budget_amount: Option<Decimal>,
}

#[utoipa::path(patch, path = "/api/coupon-policies/{id}", tag = "policies", security(("admin" = [])),
    params(("id" = i64, Path, minimum = 1, description = "Policy id")), request_body = ChangePolicyBody,
    responses((status = 200, description = "The changed policy", body = PolicyBody), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "No admin token", body = ErrorBody), (status = 403, description = "Token not accepted", body = ErrorBody),
              (status = 404, description = "POLICY_NOT_FOUND", body = ErrorBody),
              (status = 409, description = "CONCURRENT_MODIFICATION", body = ErrorBody)))]
pub(crate) async fn change(
    _: Admin,
    keys: Idempotency,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<ChangePolicyBody>,
) -> Result<HttpResponse, ApiError> {
    let id = policy_id(id.into_inner())?;
    let body = body.into_inner();
    let mut checks = Checks::default();
    if body.coupon_name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        checks.fail("couponName", "must be 1 to 100 characters, not only spaces");
    }
    checks.text("couponName", body.coupon_name.as_deref(), 100);
    checks.text("description", body.description.as_deref(), 1000);
    let cap = in_range(&mut checks, "maxIssueCount", body.max_issue_count, 0, i64::from(i32::MAX));
    let valid_until = checks.instant("validUntil", body.valid_until);
    let budget_amount = budget(&mut checks, body.budget_amount);
    checks.finish()?;
    let change = PolicyChange {
        name: body.coupon_name.map(|n| n.trim().to_owned()),
        description: body.description,
        max_issue_count: cap.and_then(|n| u32::try_from(n).ok()),
        valid_until,
        is_active: body.is_active,
        budget_amount,
    };
    let receipt = keys.receipt(|p: &Policy| answer(StatusCode::OK, &PolicyBody::from(p)));
    let policy = state.policies.change(id, &change, receipt.as_ref()).await?;
    tracing::info!(policy.id = %policy.id, version = policy.version, "coupon policy changed");
    Ok(HttpResponse::Ok().json(PolicyBody::from(&policy)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeactivateQuery {
    /// Also expire the policy's ISSUED coupons.
    expire_issued: Option<bool>,
}

/// The deactivated policy, and how many of its coupons this call expired.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeactivatedBody {
    #[serde(flatten)]
    policy: PolicyBody,
    /// Only with `expireIssued=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    expired_coupons: Option<u64>,
}

#[utoipa::path(delete, path = "/api/coupon-policies/{id}", tag = "policies", security(("admin" = [])),
    params(("id" = i64, Path, minimum = 1, description = "Policy id"),
        ("expireIssued" = Option<bool>, Query, description = "Also expire the policy's ISSUED coupons, in batches, each with coupon.expired reason POLICY_DEACTIVATED (held coupons are left to their reservation). Default false: issued coupons stay valid")),
    responses((status = 200, description = "The deactivated policy (with expiredCoupons when expireIssued=true; a repeated call expires what an interrupted one left)", body = DeactivatedBody,
                  example = json!({"id": 7, "couponName": "Black Friday 10%", "couponCode": null, "description": null,
                      "discountType": "PERCENTAGE", "discountValue": 10, "minimumOrderAmount": 30000, "maxDiscountAmount": 5000,
                      "distributionType": "FIRST_COME", "maxIssueCount": 1000, "currentIssueCount": 1000, "maxIssuePerUser": 1,
                      "validDays": 30, "validFrom": "2024-11-29T00:00:00Z", "validUntil": "2024-11-30T00:00:00Z", "isActive": false,
                      "createdAt": "2024-11-20T09:00:00Z", "updatedAt": "2024-11-29T12:00:00Z", "expiredCoupons": 412})),
              (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "No admin token", body = ErrorBody), (status = 403, description = "Token not accepted", body = ErrorBody),
              (status = 404, description = "POLICY_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn deactivate(
    req: HttpRequest,
    _: Admin,
    keys: Idempotency,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    query: web::Query<DeactivateQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = policy_id(id.into_inner())?;
    let expire_issued = query.expire_issued == Some(true);
    // With expireIssued, the answer counts coupons expired in later transactions: it is stored
    // when they are done (a retry after a crash deactivates again and expires the rest).
    let receipt = keys.receipt(move |p: &Policy| {
        if expire_issued {
            None
        } else {
            answer(StatusCode::OK, &DeactivatedBody { policy: PolicyBody::from(p), expired_coupons: None })
        }
    });
    let policy = state.policies.deactivate(id, receipt.as_ref()).await?;
    let expired_coupons =
        if expire_issued { Some(state.jobs.expire_policy(id, correlation_id(&req)).await?) } else { None };
    tracing::info!(policy.id = %policy.id, expired = expired_coupons.unwrap_or(0), "coupon policy deactivated");
    Ok(HttpResponse::Ok().json(DeactivatedBody { policy: PolicyBody::from(&policy), expired_coupons }))
}

/// Body of `PATCH …/remaining-quantity` (guide §4.4).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetCapBody {
    /// Not below the coupons already issued.
    #[schema(required = true, nullable = false, value_type = i64, minimum = 0, maximum = 2147483647)]
    #[serde(default, deserialize_with = "crate::wire::whole_number")]
    new_max_issue_count: Option<i64>,
    #[schema(value_type = Option<String>, max_length = 100, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    modified_by: Option<String>,
    #[schema(value_type = Option<String>, max_length = 500, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapChanged {
    coupon_policy_id: i64,
    previous_max_issue_count: Option<u32>,
    new_max_issue_count: Option<u32>,
    current_issued_count: u32,
    remaining_count: Option<u32>,
    success: bool,
}

#[utoipa::path(patch, path = "/api/coupon-policies/{id}/remaining-quantity", tag = "policies", security(("admin" = [])),
    params(("id" = i64, Path, minimum = 1, description = "Policy id")), request_body = SetCapBody,
    responses((status = 200, description = "The cap was set", body = CapChanged), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "No admin token", body = ErrorBody), (status = 403, description = "Token not accepted", body = ErrorBody),
              (status = 404, description = "POLICY_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn set_cap(
    _: Admin,
    keys: Idempotency,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<SetCapBody>,
) -> Result<HttpResponse, ApiError> {
    let id = policy_id(id.into_inner())?;
    let body = body.into_inner();
    let mut checks = Checks::default();
    let cap = checks.required("newMaxIssueCount", body.new_max_issue_count);
    let cap = in_range(&mut checks, "newMaxIssueCount", cap, 0, i64::from(i32::MAX));
    checks.text("modifiedBy", body.modified_by.as_deref(), 100);
    checks.text("reason", body.reason.as_deref(), 500);
    checks.finish()?;
    let cap = cap.and_then(|c| u32::try_from(c).ok()).unwrap_or(0);
    let receipt = keys.receipt(|change: &CapChange| answer(StatusCode::OK, &CapChanged::from(change)));
    let change = state.policies.set_max_issue_count(id, cap, receipt.as_ref()).await?;
    // The audit trail of stock changes: who, why, from what to what.
    tracing::info!(
        policy.id = %id,
        previous = ?change.previous,
        new = cap,
        modified_by = body.modified_by.as_deref().unwrap_or(""),
        reason = body.reason.as_deref().unwrap_or(""),
        "coupon policy cap set"
    );
    Ok(HttpResponse::Ok().json(CapChanged::from(&change)))
}

impl From<&CapChange> for CapChanged {
    fn from(change: &CapChange) -> Self {
        let p = &change.policy;
        Self {
            coupon_policy_id: p.id.get(),
            previous_max_issue_count: change.previous,
            new_max_issue_count: p.max_issue_count,
            current_issued_count: p.current_issue_count,
            remaining_count: p.remaining(),
            success: true,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatisticsBody {
    policy_id: i64,
    max_issue_count: Option<u32>,
    issued_count: u64,
    reserved_count: u64,
    used_count: u64,
    expired_count: u64,
    cancelled_count: u64,
    remaining_count: Option<u64>,
    usage_rate: Decimal,
    total_discount_amount: Decimal,
    last_issued_at: Option<String>,
    last_used_at: Option<String>,
    /// `null` without a budget; `budgetUsed` counts held and used coupons' discounts.
    budget_amount: Option<Decimal>,
    budget_used: Option<Decimal>,
    budget_remaining: Option<Decimal>,
}

impl From<&PolicyStatistics> for StatisticsBody {
    fn from(s: &PolicyStatistics) -> Self {
        Self {
            policy_id: s.policy_id.get(),
            max_issue_count: s.max_issue_count,
            issued_count: s.issued,
            reserved_count: s.reserved,
            used_count: s.used,
            expired_count: s.expired,
            cancelled_count: s.cancelled,
            remaining_count: s.remaining,
            usage_rate: s.usage_rate().normalize(),
            total_discount_amount: s.total_discount.amount().normalize(),
            last_issued_at: maybe_instant(s.last_issued_at),
            last_used_at: maybe_instant(s.last_used_at),
            budget_amount: s.budget.map(|b| b.amount.amount().normalize()),
            budget_used: s.budget.map(|b| b.used.amount().normalize()),
            budget_remaining: s.budget.map(|b| b.remaining().amount().normalize()),
        }
    }
}

#[utoipa::path(get, path = "/api/coupon-policies/{id}/statistics", tag = "policies", security(("admin" = [])),
    params(("id" = i64, Path, minimum = 1, description = "Policy id")),
    responses((status = 200, description = "Statistics of the policy", body = StatisticsBody), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "No admin token", body = ErrorBody), (status = 403, description = "Token not accepted", body = ErrorBody),
              (status = 404, description = "POLICY_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn statistics(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = policy_id(id.into_inner())?;
    let stats = state.policies.statistics(id).await?.ok_or_else(policy_not_found)?;
    Ok(HttpResponse::Ok().json(StatisticsBody::from(&stats)))
}
