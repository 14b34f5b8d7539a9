//! `POST /api/coupons/quote` (SPEC §11.3): which of the caller's coupons is best for an order.
//! Reads only; each coupon's `reason` is the code a reserve of it would get now.

use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, web};
use coupon_domain::money::Money;
use coupon_domain::quote::{Quote, Verdict};
use coupon_domain::reservation::ExternalRef;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
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

/// How a quoted coupon is judged: all of its line but its id.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerdictFields<'q> {
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
    discount_amount: Decimal,
    #[schema(value_type = f64)]
    final_amount: Decimal,
}

impl<'q> VerdictFields<'q> {
    fn of(q: &Quote, verdict: &'q Verdict) -> Self {
        let reason = verdict.outcome.err().map(|refused| reserve_code(&refused.into()));
        let discount = verdict.outcome.unwrap_or(Money::from(0));
        VerdictFields {
            policy_id: verdict.policy.id.get(),
            coupon_name: &verdict.policy.name,
            stackable: verdict.policy.stackable,
            applicable: reason.is_none(),
            reason,
            discount_amount: amount(discount),
            final_amount: amount(q.final_amount(discount)),
        }
    }
}

/// One of the caller's AVAILABLE coupons, judged for the order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotedCoupon<'q> {
    coupon_id: i64,
    #[serde(flatten)]
    #[schema(inline)]
    verdict: VerdictFields<'q>,
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

impl BestBody {
    fn of(q: &Quote) -> Self {
        BestBody {
            coupon_ids: q.best.coupons.iter().map(|c| c.get()).collect(),
            discount_amount: amount(q.best.discount),
            final_amount: amount(q.final_amount(q.best.discount)),
        }
    }
}

// `write_answer` writes this; the type is its documentation and the tests' reference.
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

/// Room for a line of the answer, so that writing it grows the buffer rarely.
const LINE_BYTES: usize = 192;

/// Writes `q` as [`QuoteAnswer`]. The coupons of one verdict differ only in their id, so each
/// verdict's fields are written as JSON once (`{"policyId":…}` with its `{` turned into a `,`) and
/// each line is its `{"couponId":…` followed by them.
fn write_answer(q: &Quote) -> Result<Vec<u8>, serde_json::Error> {
    let shared = q
        .verdicts
        .iter()
        .map(|verdict| {
            let mut fields = serde_json::to_vec(&VerdictFields::of(q, verdict))?;
            fields[0] = b',';
            Ok(fields)
        })
        .collect::<Result<Vec<_>, serde_json::Error>>()?;
    let mut out = Vec::with_capacity(LINE_BYTES * (q.lines.len() + 1));
    out.extend_from_slice(b"{\"orderAmount\":");
    serde_json::to_writer(&mut out, &amount(q.order_amount))?;
    out.extend_from_slice(b",\"coupons\":[");
    for (n, line) in q.lines.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"couponId\":");
        serde_json::to_writer(&mut out, &line.coupon.get())?;
        out.extend_from_slice(&shared[line.verdict]);
    }
    out.extend_from_slice(b"],\"best\":");
    serde_json::to_writer(&mut out, &BestBody::of(q))?;
    out.push(b'}');
    Ok(out)
}

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
    let body = write_answer(&quote)
        .map_err(|e| ApiError::unexpected(&anyhow::Error::new(e).context("writing a quote")))?;
    Ok(HttpResponse::Ok().content_type(ContentType::json()).body(body))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{DateTime, Duration};
    use coupon_domain::discount::{DiscountError, DiscountRule, DiscountType};
    use coupon_domain::id::{CouponId, PolicyId};
    use coupon_domain::policy::{CodeMode, DistributionType, IssuanceWindow, Policy};
    use coupon_domain::quote::{Best, QuoteLine};
    use serde_json::Value;

    use super::*;

    fn policy(id: i64, name: &str, stackable: bool) -> Arc<Policy> {
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("a date");
        Arc::new(Policy {
            id: PolicyId::new(id).expect("policy id"),
            name: name.to_owned(),
            code: None,
            description: None,
            discount: DiscountRule::new(DiscountType::FixedAmount, Decimal::from(1000), None, None)
                .expect("discount"),
            distribution: DistributionType::Download,
            max_issue_count: None,
            current_issue_count: 0,
            max_issue_per_user: 10,
            valid_days: 30,
            window: IssuanceWindow::new(now - Duration::days(1), now + Duration::days(1)).expect("window"),
            is_active: true,
            code_mode: CodeMode::Shared,
            stackable,
            budget_amount: None,
            version: 0,
            created_at: now,
            updated_at: now,
        })
    }

    fn coupon(id: i64) -> CouponId {
        CouponId::new(id).expect("coupon id")
    }

    /// The answer as serde writes [`QuoteAnswer`], the documented type.
    fn documented(q: &Quote) -> Value {
        let coupons = q
            .lines
            .iter()
            .map(|&line| QuotedCoupon {
                coupon_id: line.coupon.get(),
                verdict: VerdictFields::of(q, q.verdict(line)),
            })
            .collect();
        let answer = QuoteAnswer { order_amount: amount(q.order_amount), coupons, best: BestBody::of(q) };
        serde_json::to_value(answer).expect("serialize")
    }

    fn written(q: &Quote) -> Value {
        serde_json::from_slice(&write_answer(q).expect("write")).expect("the answer is JSON")
    }

    #[test]
    fn the_written_answer_is_the_documented_one() {
        let q = Quote {
            order_amount: Money::new(Decimal::new(5_000_050, 2)),
            verdicts: vec![
                Verdict {
                    policy: policy(1, "Ten \"off\"\n", true),
                    outcome: Ok(Money::new(Decimal::new(100_050, 2))),
                },
                Verdict {
                    policy: policy(2, "Big", false),
                    outcome: Err(DiscountError::MinimumOrderNotMet { minimum: Money::from(60_000) }.into()),
                },
            ],
            lines: vec![
                QuoteLine { coupon: coupon(9), verdict: 1 },
                QuoteLine { coupon: coupon(7), verdict: 0 },
                QuoteLine { coupon: coupon(5), verdict: 0 },
            ],
            best: Best {
                coupons: vec![coupon(5), coupon(7)],
                discount: Money::new(Decimal::new(200_100, 2)),
            },
        };
        let answer = written(&q);
        assert_eq!(answer, documented(&q));
        assert_eq!(answer["coupons"][0]["couponId"], 9);
        assert_eq!(answer["coupons"][0]["reason"], "MINIMUM_ORDER_NOT_MET");
        assert_eq!(answer["coupons"][1]["couponName"], "Ten \"off\"\n");
        assert_eq!(answer["coupons"][2]["finalAmount"], 49_000);
        let keys: Vec<&str> =
            answer["coupons"][1].as_object().expect("line").keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "applicable",
                "couponId",
                "couponName",
                "discountAmount",
                "finalAmount",
                "policyId",
                "stackable"
            ]
        );
    }

    #[test]
    fn an_empty_wallet_writes_an_empty_list() {
        let q = Quote {
            order_amount: Money::from(100),
            verdicts: Vec::new(),
            lines: Vec::new(),
            best: Best { coupons: Vec::new(), discount: Money::from(0) },
        };
        let answer = written(&q);
        assert_eq!(answer, documented(&q));
        assert_eq!(answer["coupons"], serde_json::json!([]));
    }
}
