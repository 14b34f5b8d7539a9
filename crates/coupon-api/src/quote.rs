//! `POST /api/coupons/quote` (SPEC §11.3): which of the caller's coupons is best for an order.
//! Reads only; each coupon's `reason` is the code a reserve of it would get now.

use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, web};
use coupon_domain::money::Money;
use coupon_domain::quote::Quote;
use coupon_domain::reservation::ExternalRef;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::checkout::{reference, user_id};
use crate::error::from_domain::reserve_code;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::idempotency::{Who, keyed};
use crate::state::AppState;
use crate::wire::Checks;
use coupon_http::resource;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/coupons/quote", "POST").route(keyed(Who::User, web::post().to(quote))));
}

/// Body of `POST /api/coupons/quote`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuoteBody {
    /// Must equal X-User-Id.
    #[schema(required = true, nullable = false, value_type = i64, minimum = 1)]
    #[serde(default, deserialize_with = "crate::wire::whole_number")]
    user_id: Option<i64>,
    /// Above 0 (else INVALID_ORDER_AMOUNT), at most two decimal places.
    #[schema(required = true, nullable = false, value_type = f64, minimum = -9999999999999.99, maximum = 9999999999999.99)]
    order_amount: Option<Decimal>,
    /// The order the coupons would be reserved for: its live reservations limit what stacks.
    #[schema(value_type = Option<String>, min_length = 1, max_length = 50, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    order_id: Option<String>,
}

/// One of the caller's AVAILABLE coupons, judged for the order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotedCoupon<'q> {
    coupon_id: i64,
    policy_id: i64,
    coupon_name: &'q str,
    stackable: bool,
    /// Whether a reserve of this coupon for the order would hold it now.
    applicable: bool,
    /// The error code a reserve would get (absent when applicable).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<ErrorCode>)]
    reason: Option<ErrorCode>,
    /// 0 when not applicable.
    #[schema(value_type = f64)]
    discount_amount: &'q RawValue,
    #[schema(value_type = f64)]
    final_amount: &'q RawValue,
}

/// The best allowed combination (SPEC §11.4): one non-stackable coupon, or stackable ones up to
/// COUPON_MAX_COUPONS_PER_ORDER, their sum capped at the order amount. Empty when none applies.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BestBody {
    coupon_ids: Vec<i64>,
    #[schema(value_type = f64)]
    discount_amount: Decimal,
    #[schema(value_type = f64)]
    final_amount: Decimal,
}

/// A quote.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuoteAnswer<'q> {
    #[schema(value_type = f64)]
    order_amount: Decimal,
    /// The caller's AVAILABLE coupons (the 1,000 newest), newest first.
    coupons: Vec<QuotedCoupon<'q>>,
    best: BestBody,
}

fn amount(m: Money) -> Decimal {
    m.amount().normalize()
}

/// The discount of each verdict of a quote and what is left to pay with it, written as JSON
/// numbers once however many lines share the verdict.
struct Amounts(Vec<(Box<RawValue>, Box<RawValue>)>);

impl Amounts {
    fn of(q: &Quote) -> Result<Self, serde_json::Error> {
        let number = |m: Money| RawValue::from_string(amount(m).to_string());
        let rendered = q
            .verdicts
            .iter()
            .map(|verdict| {
                let discount = verdict.outcome.unwrap_or(Money::from(0));
                Ok((number(discount)?, number(q.final_amount(discount))?))
            })
            .collect::<Result<_, serde_json::Error>>()?;
        Ok(Self(rendered))
    }
}

impl<'q> QuoteAnswer<'q> {
    fn new(q: &'q Quote, amounts: &'q Amounts) -> Self {
        let coupons = q
            .lines
            .iter()
            .map(|&line| {
                let verdict = q.verdict(line);
                let reason = verdict.outcome.err().map(|refused| reserve_code(&refused.into()));
                let (discount, left) = &amounts.0[line.verdict];
                QuotedCoupon {
                    coupon_id: line.coupon.get(),
                    policy_id: verdict.policy.id.get(),
                    coupon_name: &verdict.policy.name,
                    stackable: verdict.policy.stackable,
                    applicable: reason.is_none(),
                    reason,
                    discount_amount: discount,
                    final_amount: left,
                }
            })
            .collect();
        QuoteAnswer {
            order_amount: amount(q.order_amount),
            coupons,
            best: BestBody {
                coupon_ids: q.best.coupons.iter().map(|c| c.get()).collect(),
                discount_amount: amount(q.best.discount),
                final_amount: amount(q.final_amount(q.best.discount)),
            },
        }
    }
}

/// Room for a line of the answer, so that writing it grows the buffer rarely.
const LINE_BYTES: usize = 192;

#[utoipa::path(post, path = "/api/coupons/quote", tag = "checkout", security(("user" = [])),
    request_body = QuoteBody,
    responses(
        (status = 200, description = "Each AVAILABLE coupon judged by the reserve rule, and the best allowed combination; nothing is held or written", body = QuoteAnswer),
        (status = 400, description = "VALIDATION_ERROR, INVALID_ORDER_AMOUNT", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "UNAUTHORIZED_COUPON_ACCESS (userId is not the caller)", body = ErrorBody),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = ErrorBody)))]
pub(crate) async fn quote(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<QuoteBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut checks = Checks::default();
    let user = user_id(&mut checks, body.user_id);
    let order_amount = checks.required("orderAmount", body.order_amount);
    let order_amount = checks.money("orderAmount", order_amount);
    let order = reference(&mut checks, "orderId", body.order_id.as_deref(), ExternalRef::ORDER_MAX);
    checks.finish()?;
    let (Some(user), Some(order_amount)) = (user, order_amount) else {
        return Err(ApiError::new(ErrorCode::ValidationError, "Request validation failed"));
    };
    caller.must_be(user)?;
    let quote = state.quotes.quote(user, order_amount, order.as_ref()).await?;
    let unexpected =
        |e: serde_json::Error| ApiError::unexpected(&anyhow::Error::new(e).context("writing a quote"));
    let amounts = Amounts::of(&quote).map_err(unexpected)?;
    let mut body = Vec::with_capacity(LINE_BYTES * (quote.lines.len() + 1));
    serde_json::to_writer(&mut body, &QuoteAnswer::new(&quote, &amounts)).map_err(unexpected)?;
    Ok(HttpResponse::Ok().content_type(ContentType::json()).body(body))
}
