//! Support's actions on one coupon (SPEC §11.2, admin): revoke.

use actix_web::{HttpRequest, HttpResponse, web};
use coupon_domain::id::CouponId;
use coupon_domain::support::Revocation;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::Admin;
use crate::coupons::CouponBody;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::state::AppState;
use crate::wire::{Checks, correlation_id};
use coupon_http::resource;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/admin/coupons/{couponId}/revoke", "POST").route(web::post().to(revoke)));
}

/// Body of `POST /api/admin/coupons/{couponId}/revoke`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevokeBody {
    /// Why the coupon is taken back (kept in `coupon.cancelled` for audit).
    #[schema(required = true, nullable = false, value_type = String, min_length = 1, max_length = 200)]
    reason: Option<String>,
    /// Who takes it back.
    #[schema(required = true, nullable = false, value_type = String, min_length = 1, max_length = 100)]
    revoked_by: Option<String>,
}

/// A required text field: present, not blank, at most `max` characters without control characters.
fn required_text(checks: &mut Checks, field: &str, value: Option<String>, max: usize) -> Option<String> {
    let value = checks.required(field, value)?;
    if value.trim().is_empty() {
        checks.fail(field, "must not be blank");
        return None;
    }
    checks.text(field, Some(&value), max).then_some(value)
}

#[utoipa::path(post, path = "/api/admin/coupons/{couponId}/revoke", tag = "support", security(("admin" = [])),
    params(("couponId" = i64, Path, minimum = 1, description = "The coupon to take back")),
    request_body(content = RevokeBody, example = json!({"reason": "issued to the wrong account", "revokedBy": "support-17"})),
    responses(
        (status = 200, description = "The coupon, CANCELLED (also when it was revoked before); its user slot is free again, and coupon.cancelled says ADMIN_REVOKED", body = CouponBody),
        (status = 400, description = "VALIDATION_ERROR", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "UNAUTHORIZED_COUPON_ACCESS: the token is not accepted", body = ErrorBody),
        (status = 404, description = "COUPON_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "COUPON_NOT_AVAILABLE (held by a checkout) or COUPON_ALREADY_USED", body = ErrorBody),
        (status = 410, description = "COUPON_EXPIRED", body = ErrorBody)))]
pub(crate) async fn revoke(
    req: HttpRequest,
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<RevokeBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut checks = Checks::default();
    let reason = required_text(&mut checks, "reason", body.reason, 200);
    let revoked_by = required_text(&mut checks, "revokedBy", body.revoked_by, 100);
    checks.finish()?;
    let (Some(reason), Some(revoked_by)) = (reason, revoked_by) else {
        return Err(ApiError::new(ErrorCode::ValidationError, "Request validation failed"));
    };
    let id = CouponId::new(id.into_inner())
        .ok_or_else(|| ApiError::new(ErrorCode::CouponNotFound, "no coupon has this id"))?;
    let revocation = Revocation { reason, revoked_by };
    let revoked = state.support.revoke(id, &revocation, correlation_id(&req)).await?;
    if !revoked.replay {
        tracing::info!(coupon.id = %id, revoked_by = %revocation.revoked_by, reason = %revocation.reason, "coupon revoked");
        metrics::counter!("coupon_revoked_total").increment(1);
    }
    Ok(HttpResponse::Ok().json(CouponBody::new(&revoked.coupon, &revoked.policy, state.clock.now())))
}
