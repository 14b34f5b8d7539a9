//! Support's actions on one coupon (SPEC §11.2, admin): revoke, and use for an order taken
//! outside the checkout.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use coupon_domain::reservation::ExternalRef;
use coupon_domain::support::{AdminUse, Revocation, Revoked};
use rust_decimal::Decimal;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::Admin;
use crate::checkout::reference;
use crate::coupons::CouponBody;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::idempotency::{Idempotency, Who, answer, keyed};
use crate::state::AppState;
use crate::wire::{Checks, correlation_id, coupon_id};
use coupon_http::resource;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/admin/coupons/{couponId}/revoke", "POST")
            .route(keyed(Who::Admin, web::post().to(revoke))),
    )
    .service(
        resource("/api/admin/coupons/{couponId}/use", "POST")
            .route(keyed(Who::Admin, web::post().to(use_coupon))),
    );
}

/// Body of `POST /api/admin/coupons/{couponId}/revoke`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevokeBody {
    /// Why the coupon is taken back (kept in `coupon.cancelled` for audit).
    #[schema(required = true, nullable = false, value_type = String, min_length = 1, max_length = 200, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    reason: Option<String>,
    /// Who takes it back.
    #[schema(required = true, nullable = false, value_type = String, min_length = 1, max_length = 100, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    revoked_by: Option<String>,
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
    keys: Idempotency,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<RevokeBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut checks = Checks::default();
    let reason = checks.required_text("reason", body.reason, 200);
    let revoked_by = checks.required_text("revokedBy", body.revoked_by, 100);
    checks.finish()?;
    let (Some(reason), Some(revoked_by)) = (reason, revoked_by) else {
        return Err(ApiError::new(ErrorCode::ValidationError, "Request validation failed"));
    };
    let id = coupon_id(id.into_inner())?;
    let revocation = Revocation { reason, revoked_by };
    let now = state.clock.now();
    let cause = keys
        .cause(&req, move |r: &Revoked| answer(StatusCode::OK, &CouponBody::new(&r.coupon, &r.policy, now)));
    let revoked = state.support.revoke(id, &revocation, cause).await?;
    if !revoked.replay {
        tracing::info!(coupon.id = %id, revoked_by = %revocation.revoked_by, reason = %revocation.reason, "coupon revoked");
        metrics::counter!("coupon_revoked_total").increment(1);
    }
    Ok(HttpResponse::Ok().json(CouponBody::new(&revoked.coupon, &revoked.policy, now)))
}

/// Body of `POST /api/admin/coupons/{couponId}/use`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminUseBody {
    /// The order the coupon was used for (for a held coupon, its reservation's order).
    #[schema(required = true, nullable = false, value_type = String, min_length = 1, max_length = 50, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    order_id: Option<String>,
    /// The order's amount: the discount of SPEC §4.5 is computed on it for an ISSUED coupon (a held
    /// coupon keeps its reservation's discount).
    #[schema(required = true, nullable = false, value_type = f64, minimum = -9999999999999.99, maximum = 9999999999999.99)]
    order_amount: Option<Decimal>,
    /// Who marks the coupon used.
    #[schema(required = true, nullable = false, value_type = String, min_length = 1, max_length = 100, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    used_by: Option<String>,
    /// Why (kept in the log).
    #[schema(required = true, nullable = false, value_type = String, min_length = 1, max_length = 200, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    reason: Option<String>,
}

#[utoipa::path(post, path = "/api/admin/coupons/{couponId}/use", tag = "support", security(("admin" = [])),
    params(("couponId" = i64, Path, minimum = 1, description = "The coupon to mark used")),
    request_body(content = AdminUseBody, example = json!({"orderId": "O-77", "orderAmount": 45000, "usedBy": "support-17", "reason": "order placed by phone"})),
    responses(
        (status = 200, description = "The coupon, USED for the order (also when it was before, for the same order); coupon.used says metadata.source ADMIN", body = CouponBody),
        (status = 400, description = "VALIDATION_ERROR, INVALID_ORDER_AMOUNT, MINIMUM_ORDER_NOT_MET", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "UNAUTHORIZED_COUPON_ACCESS: the token is not accepted", body = ErrorBody),
        (status = 404, description = "COUPON_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "COUPON_ALREADY_USED (for another order), COUPON_NOT_AVAILABLE (revoked, or held for another order)", body = ErrorBody),
        (status = 410, description = "COUPON_EXPIRED", body = ErrorBody)))]
pub(crate) async fn use_coupon(
    req: HttpRequest,
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<AdminUseBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut checks = Checks::default();
    let order_id = checks.required("orderId", body.order_id.as_deref()).map(str::to_owned);
    let order_id = reference(&mut checks, "orderId", order_id.as_deref(), ExternalRef::ORDER_MAX);
    let order_amount = checks.required("orderAmount", body.order_amount);
    let order_amount = checks.money("orderAmount", order_amount);
    let used_by = checks.required_text("usedBy", body.used_by, 100);
    let reason = checks.required_text("reason", body.reason, 200);
    checks.finish()?;
    let (Some(order_id), Some(order_amount), Some(used_by), Some(reason)) =
        (order_id, order_amount, used_by, reason)
    else {
        return Err(ApiError::new(ErrorCode::ValidationError, "Request validation failed"));
    };
    let id = coupon_id(id.into_inner())?;
    let request = AdminUse { order_id, order_amount, used_by, reason };
    // Its answer is stored after the reply: a hold and a confirmation are two transactions, and a
    // retry after a crash between them confirms the hold (the same coupon JSON).
    let used = state.support.use_coupon(id, &request, correlation_id(&req).into()).await?;
    if !used.replay {
        tracing::info!(coupon.id = %id, order.id = request.order_id.as_str(), used_by = %request.used_by,
            reason = %request.reason, "coupon used by an admin");
    }
    Ok(HttpResponse::Ok().json(CouponBody::new(&used.coupon, &used.policy, state.clock.now())))
}
