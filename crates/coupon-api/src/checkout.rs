//! Two-phase use (SPEC §4.4, §5): reserve or apply (one hold), release, and the synchronous
//! confirmation `POST /api/coupons/use`. The order service calls these on behalf of the user
//! named by `X-User-Id`, who must own the coupon.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use coupon_domain::id::{CouponId, UserId};
use coupon_domain::money::Money;
use coupon_domain::policy::Policy;
use coupon_domain::reservation::{
    CancelReason, ConfirmRequest, Confirmed, ExternalRef, Released, Reservation, ReservationId,
    ReserveRequest, Reserved,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::idempotency::{Idempotency, Who, answer, keyed};
use crate::state::AppState;
use crate::wire::{Checks, instant, maybe_instant};
use coupon_http::resource;

/// The messages of a release and a use.
const RELEASED: &str = "Reservation released";
const USED: &str = "Coupon used";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/coupons/reserve", "POST").route(keyed(Who::User, web::post().to(reserve))))
        .service(resource("/api/coupons/apply", "POST").route(keyed(Who::User, web::post().to(apply))))
        .service(resource("/api/coupons/use", "POST").route(keyed(Who::User, web::post().to(confirm))))
        .service(
            resource("/api/coupons/apply/{reservationId}", "DELETE")
                .route(keyed(Who::User, web::delete().to(release))),
        )
        .service(
            resource("/api/coupons/reserve/{reservationId}", "DELETE")
                .route(keyed(Who::User, web::delete().to(release_alias))),
        );
}

/// Body of `POST /api/coupons/reserve` and `/apply`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReserveBody {
    /// 1–50 characters of `A-Z a-z 0-9 _ -`, chosen by the caller; the idempotency key.
    #[schema(required = true, nullable = false, value_type = String, pattern = "^[A-Za-z0-9_-]{1,50}$")]
    reservation_id: Option<String>,
    /// Must equal X-User-Id.
    #[schema(required = true, nullable = false, value_type = i64, minimum = 1)]
    #[serde(default, deserialize_with = "crate::wire::whole_number")]
    user_id: Option<i64>,
    #[schema(required = true, nullable = false, value_type = i64, minimum = 1)]
    #[serde(default, deserialize_with = "crate::wire::whole_number")]
    coupon_id: Option<i64>,
    /// Above 0 (else INVALID_ORDER_AMOUNT), at most two decimal places.
    #[schema(required = true, nullable = false, value_type = f64, minimum = -9999999999999.99, maximum = 9999999999999.99)]
    order_amount: Option<Decimal>,
    #[schema(value_type = Option<String>, min_length = 1, max_length = 50, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    order_id: Option<String>,
}

/// A reservation on the wire. Reserve and apply answer with the coupon's terms as well.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReservationBody {
    reservation_id: String,
    coupon_id: i64,
    user_id: i64,
    order_id: Option<String>,
    #[schema(value_type = f64)]
    order_amount: Decimal,
    #[schema(value_type = f64)]
    discount_amount: Decimal,
    #[schema(value_type = f64)]
    final_amount: Decimal,
    /// PENDING, CONFIRMED, CANCELLED or EXPIRED.
    status: &'static str,
    reserved_at: String,
    expires_at: String,
    payment_id: Option<String>,
    confirmed_at: Option<String>,
    late_confirmation: bool,
    cancelled_at: Option<String>,
    cancel_reason: Option<String>,
    success: bool,
    message: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    coupon_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    discount_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    discount_value: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    minimum_order_amount: Option<Decimal>,
    /// Present (possibly null) on reserve and apply answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    max_discount_amount: Option<Option<Decimal>>,
}

fn amount(m: Money) -> Decimal {
    m.amount().normalize()
}

impl ReservationBody {
    fn new(r: &Reservation, policy: Option<&Policy>, message: &'static str) -> Self {
        let rule = policy.map(|p| &p.discount);
        Self {
            reservation_id: r.id.as_str().to_owned(),
            coupon_id: r.coupon_id.get(),
            user_id: r.user_id.get(),
            order_id: r.order_id.as_ref().map(|o| o.as_str().to_owned()),
            order_amount: amount(r.order_amount),
            discount_amount: amount(r.discount),
            final_amount: amount(r.final_amount()),
            status: r.status.as_str(),
            reserved_at: instant(r.reserved_at),
            expires_at: instant(r.expires_at),
            payment_id: r.payment_id.as_ref().map(|p| p.as_str().to_owned()),
            confirmed_at: maybe_instant(r.confirmed_at),
            late_confirmation: r.late_confirmation,
            cancelled_at: maybe_instant(r.cancelled_at),
            cancel_reason: r.cancel_reason.clone(),
            success: true,
            message,
            coupon_name: policy.map(|p| p.name.clone()),
            discount_type: rule.map(|d| d.discount_type().as_str()),
            discount_value: rule.map(|d| d.value().normalize()),
            minimum_order_amount: rule.map(|d| amount(d.minimum_order_amount())),
            max_discount_amount: rule.map(|d| d.max_discount_amount().map(amount)),
        }
    }
}

fn reservation_id(checks: &mut Checks, raw: Option<&str>) -> Option<ReservationId> {
    let raw = checks.required("reservationId", raw)?;
    ReservationId::parse(raw).map_err(|e| checks.fail("reservationId", e.to_string())).ok()
}

/// The required `userId` of a body.
pub(crate) fn user_id(checks: &mut Checks, raw: Option<i64>) -> Option<UserId> {
    checks.required("userId", raw).and_then(|u| {
        UserId::new(u).or_else(|| {
            checks.fail("userId", "must be a positive integer");
            None
        })
    })
}

pub(crate) fn reference(
    checks: &mut Checks,
    field: &str,
    raw: Option<&str>,
    max: usize,
) -> Option<ExternalRef> {
    ExternalRef::parse(raw?, max).map_err(|e| checks.fail(field, e.to_string())).ok()
}

/// Checks a reserve body. A non-positive amount is `INVALID_ORDER_AMOUNT` (SPEC §4.5), answered
/// after the field checks pass.
fn reserve_request(body: ReserveBody) -> Result<ReserveRequest, ApiError> {
    let mut checks = Checks::default();
    let reservation = reservation_id(&mut checks, body.reservation_id.as_deref());
    let user = user_id(&mut checks, body.user_id);
    let coupon = checks.required("couponId", body.coupon_id).and_then(|c| {
        CouponId::new(c).or_else(|| {
            checks.fail("couponId", "must be a positive integer");
            None
        })
    });
    let order_amount = checks.required("orderAmount", body.order_amount);
    let order_amount = checks.money("orderAmount", order_amount);
    let order_id = reference(&mut checks, "orderId", body.order_id.as_deref(), ExternalRef::ORDER_MAX);
    checks.finish()?;
    match (reservation, user, coupon, order_amount) {
        (Some(reservation_id), Some(user), Some(coupon), Some(order_amount)) => {
            Ok(ReserveRequest { reservation_id, user, coupon, order_amount, order_id })
        }
        _ => Err(ApiError::new(ErrorCode::ValidationError, "Request validation failed")),
    }
}

async fn hold(
    req: &HttpRequest,
    (caller, keys): (Caller, Idempotency),
    state: &AppState,
    body: ReserveBody,
    message: &'static str,
) -> Result<HttpResponse, ApiError> {
    let request = reserve_request(body)?;
    caller.must_be(request.user)?;
    let cause = keys.cause(req, move |r: &Reserved| {
        answer(StatusCode::OK, &ReservationBody::new(&r.reservation, Some(&r.policy), message))
    });
    let reserved = state.checkout.reserve(&request, cause).await?;
    if !reserved.replay {
        tracing::info!(
            reservation.id = reserved.reservation.id.as_str(),
            coupon.id = %reserved.reservation.coupon_id,
            user.id = %reserved.reservation.user_id,
            "coupon reserved"
        );
    }
    Ok(HttpResponse::Ok().json(ReservationBody::new(&reserved.reservation, Some(&reserved.policy), message)))
}

#[utoipa::path(post, path = "/api/coupons/reserve", tag = "checkout", security(("user" = [])),
    request_body = ReserveBody,
    responses(
        (status = 200, description = "Held (or the same request again)", body = ReservationBody),
        (status = 400, description = "VALIDATION_ERROR, INVALID_ORDER_AMOUNT, MINIMUM_ORDER_NOT_MET", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "UNAUTHORIZED_COUPON_ACCESS", body = ErrorBody),
        (status = 404, description = "COUPON_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "COUPON_NOT_AVAILABLE (held elsewhere, or the id is taken), COUPON_ALREADY_USED", body = ErrorBody),
        (status = 410, description = "COUPON_EXPIRED, RESERVATION_EXPIRED", body = ErrorBody),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ErrorBody)))]
pub(crate) async fn reserve(
    req: HttpRequest,
    caller: Caller,
    keys: Idempotency,
    state: web::Data<AppState>,
    body: web::Json<ReserveBody>,
) -> Result<HttpResponse, ApiError> {
    hold(&req, (caller, keys), &state, body.into_inner(), "Coupon reserved").await
}

#[utoipa::path(post, path = "/api/coupons/apply", tag = "checkout", security(("user" = [])),
    request_body = ReserveBody,
    responses(
        (status = 200, description = "The coupon's terms and discount; the coupon is held like a reserve", body = ReservationBody),
        (status = 400, description = "VALIDATION_ERROR, INVALID_ORDER_AMOUNT, MINIMUM_ORDER_NOT_MET", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "UNAUTHORIZED_COUPON_ACCESS", body = ErrorBody),
        (status = 404, description = "COUPON_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "COUPON_NOT_AVAILABLE, COUPON_ALREADY_USED", body = ErrorBody),
        (status = 410, description = "COUPON_EXPIRED, RESERVATION_EXPIRED", body = ErrorBody)))]
pub(crate) async fn apply(
    req: HttpRequest,
    caller: Caller,
    keys: Idempotency,
    state: web::Data<AppState>,
    body: web::Json<ReserveBody>,
) -> Result<HttpResponse, ApiError> {
    hold(&req, (caller, keys), &state, body.into_inner(), "Coupon applied").await
}

async fn free(
    req: &HttpRequest,
    (caller, keys): (Caller, Idempotency),
    state: &AppState,
    raw: &str,
) -> Result<HttpResponse, ApiError> {
    let id = ReservationId::parse(raw)
        .map_err(|_| ApiError::new(ErrorCode::ReservationNotFound, "no reservation has this id"))?;
    let cause = keys.cause(req, |r: &Released| {
        answer(StatusCode::OK, &ReservationBody::new(&r.reservation, None, RELEASED))
    });
    let released = state.checkout.release(&id, Some(caller.0), CancelReason::Released, cause).await?;
    if !released.replay {
        tracing::info!(reservation.id = id.as_str(), coupon.id = %released.reservation.coupon_id, "reservation released");
    }
    Ok(HttpResponse::Ok().json(ReservationBody::new(&released.reservation, None, RELEASED)))
}

#[utoipa::path(delete, path = "/api/coupons/apply/{reservationId}", tag = "checkout", security(("user" = [])),
    params(("reservationId" = String, Path, description = "The reservation to release")),
    responses(
        (status = 200, description = "Released (also when it had already ended)", body = ReservationBody),
        (status = 400, description = "VALIDATION_ERROR: not a reservation id", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "UNAUTHORIZED_COUPON_ACCESS", body = ErrorBody),
        (status = 404, description = "RESERVATION_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "COUPON_ALREADY_USED: confirmed uses end by order cancellation", body = ErrorBody)))]
pub(crate) async fn release(
    req: HttpRequest,
    caller: Caller,
    keys: Idempotency,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    free(&req, (caller, keys), &state, &id).await
}

#[utoipa::path(delete, path = "/api/coupons/reserve/{reservationId}", tag = "checkout", security(("user" = [])),
    params(("reservationId" = String, Path, description = "The reservation to release")),
    responses(
        (status = 200, description = "Same as DELETE /api/coupons/apply/{reservationId}", body = ReservationBody),
        (status = 400, description = "VALIDATION_ERROR: not a reservation id", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "UNAUTHORIZED_COUPON_ACCESS", body = ErrorBody),
        (status = 404, description = "RESERVATION_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "COUPON_ALREADY_USED: confirmed uses end by order cancellation", body = ErrorBody)))]
pub(crate) async fn release_alias(
    req: HttpRequest,
    caller: Caller,
    keys: Idempotency,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    free(&req, (caller, keys), &state, &id).await
}

/// Body of `POST /api/coupons/use`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UseBody {
    #[schema(required = true, nullable = false, value_type = String, pattern = "^[A-Za-z0-9_-]{1,50}$")]
    reservation_id: Option<String>,
    #[schema(required = true, nullable = false, value_type = String, min_length = 1, max_length = 50, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    order_id: Option<String>,
    #[schema(value_type = Option<String>, min_length = 1, max_length = 100, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    payment_id: Option<String>,
}

#[utoipa::path(post, path = "/api/coupons/use", tag = "checkout", security(("user" = [])),
    request_body = UseBody,
    responses(
        (status = 200, description = "Confirmed (or the same confirmation again); same effect as payment.completed", body = ReservationBody),
        (status = 400, description = "VALIDATION_ERROR", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "UNAUTHORIZED_COUPON_ACCESS", body = ErrorBody),
        (status = 404, description = "RESERVATION_NOT_FOUND", body = ErrorBody),
        (status = 409, description = "COUPON_ALREADY_USED (another payment), COUPON_NOT_AVAILABLE (another order, or released)", body = ErrorBody),
        (status = 410, description = "RESERVATION_EXPIRED: timed out and the coupon moved on", body = ErrorBody)))]
pub(crate) async fn confirm(
    req: HttpRequest,
    caller: Caller,
    keys: Idempotency,
    state: web::Data<AppState>,
    body: web::Json<UseBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut checks = Checks::default();
    let reservation = reservation_id(&mut checks, body.reservation_id.as_deref());
    let order = checks
        .required("orderId", body.order_id.as_deref())
        .and_then(|o| reference(&mut checks, "orderId", Some(o), ExternalRef::ORDER_MAX));
    let payment = reference(&mut checks, "paymentId", body.payment_id.as_deref(), ExternalRef::PAYMENT_MAX);
    checks.finish()?;
    let (Some(reservation_id), Some(order_id)) = (reservation, order) else {
        return Err(ApiError::new(ErrorCode::ValidationError, "Request validation failed"));
    };
    let request =
        ConfirmRequest { reservation_id, order_id, payment_id: payment, user: Some(caller.0), payment: None };
    let cause = keys.cause(&req, |c: &Confirmed| {
        answer(StatusCode::OK, &ReservationBody::new(&c.reservation, None, USED))
    });
    let confirmed = state.checkout.confirm(&request, cause).await?;
    if !confirmed.replay {
        tracing::info!(
            reservation.id = confirmed.reservation.id.as_str(),
            coupon.id = %confirmed.reservation.coupon_id,
            late = confirmed.reservation.late_confirmation,
            "coupon used"
        );
    }
    Ok(HttpResponse::Ok().json(ReservationBody::new(&confirmed.reservation, None, USED)))
}
