//! The AsyncAPI 3 document of every event the service produces and consumes (`asyncapi.json`
//! beside this crate's sources), served at `/api-docs/asyncapi.json`. The tests below hold it to
//! the code: each produced envelope, as the encoder writes it, matches its schema exactly (no
//! field missing, none undocumented), and each consumed example reads into a command.

/// The document, as served.
pub const DOCUMENT: &str = include_str!("../asyncapi.json");

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};
    use coupon_domain::budget::Budget;
    use coupon_domain::consume::{Command, DeadLetter, Delivery, Refusal, Source};
    use coupon_domain::context::{EventContext, Origin};
    use coupon_domain::coupon::{CouponStatus, ExpiryReason, IssuedCoupon};
    use coupon_domain::discount::{DiscountRule, DiscountType};
    use coupon_domain::event::{CouponEvent, EventEncoder};
    use coupon_domain::id::{CouponId, PolicyId, UserId};
    use coupon_domain::money::Money;
    use coupon_domain::policy::{DistributionType, IssuanceWindow, Policy};
    use coupon_domain::reservation::{
        CancelReason, ExternalRef, Reservation, ReservationId, ReservationStatus,
    };
    use coupon_domain::support::Revocation;
    use rust_decimal::Decimal;
    use serde_json::Value;

    use super::DOCUMENT;
    use crate::envelope::{JsonEventEncoder, ProducedTopics};
    use crate::inbound::Inbound;

    fn document() -> Value {
        serde_json::from_str(DOCUMENT).expect("the document is JSON")
    }

    /// The schema `#/components/schemas/{name}`.
    fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
        doc.pointer(&format!("/components/schemas/{name}")).unwrap_or_else(|| panic!("schema {name}"))
    }

    fn type_matches(kind: &str, value: &Value) -> bool {
        match kind {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            other => panic!("type {other}"),
        }
    }

    /// The subset of JSON Schema the document uses: `$ref`, `type` (one or a list), `const`,
    /// `enum`, `properties`, `required`, `additionalProperties: false`, `items`. Returns what
    /// does not match, by path.
    fn check(doc: &Value, schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let target =
                doc.pointer(reference.trim_start_matches('#')).unwrap_or_else(|| panic!("{reference}"));
            return check(doc, target, value, path, errors);
        }
        let kinds: Vec<&str> = match schema.get("type") {
            Some(Value::String(kind)) => vec![kind.as_str()],
            Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !kinds.is_empty() && !kinds.iter().any(|kind| type_matches(kind, value)) {
            errors.push(format!("{path}: {value} is not {kinds:?}"));
            return;
        }
        if let Some(expected) = schema.get("const")
            && expected != value
        {
            errors.push(format!("{path}: {value} is not {expected}"));
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            errors.push(format!("{path}: {value} is not one of {allowed:?}"));
        }
        if let (Some(properties), Some(object)) =
            (schema.get("properties").and_then(Value::as_object), value.as_object())
        {
            for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                let name = required.as_str().unwrap_or_default();
                if !object.contains_key(name) {
                    errors.push(format!("{path}.{name}: missing"));
                }
            }
            for (name, field) in object {
                match properties.get(name) {
                    Some(property) => check(doc, property, field, &format!("{path}.{name}"), errors),
                    None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        errors.push(format!("{path}.{name}: not in the document"));
                    }
                    None => {}
                }
            }
        }
        if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
            for (i, item) in array.iter().enumerate() {
                check(doc, items, item, &format!("{path}[{i}]"), errors);
            }
        }
    }

    fn assert_matches(doc: &Value, name: &str, payload: &str) {
        let value: Value = serde_json::from_str(payload).expect("JSON payload");
        let mut errors = Vec::new();
        check(doc, schema(doc, name), &value, name, &mut errors);
        assert!(errors.is_empty(), "{name}: {errors:#?}\n{value:#}");
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 10, 0, 0).single().expect("instant")
    }

    fn policy(code: bool) -> Policy {
        Policy {
            id: PolicyId::new(7).expect("id"),
            name: "Black Friday".into(),
            code: code.then(|| coupon_domain::policy::CouponCode::parse("BF2024").expect("code")),
            description: None,
            discount: DiscountRule::new(
                DiscountType::Percentage,
                Decimal::from(10),
                Some(Money::from(30_000)),
                Some(Money::from(5_000)),
            )
            .expect("rule"),
            distribution: if code { DistributionType::Code } else { DistributionType::FirstCome },
            max_issue_count: Some(1_000),
            current_issue_count: 1,
            max_issue_per_user: 1,
            valid_days: 30,
            window: IssuanceWindow::new(at(), at() + chrono::Duration::days(1)).expect("window"),
            is_active: true,
            code_mode: coupon_domain::policy::CodeMode::Shared,
            stackable: false,
            budget_amount: None,
            version: 0,
            created_at: at(),
            updated_at: at(),
        }
    }

    fn coupon() -> IssuedCoupon {
        IssuedCoupon {
            id: CouponId::new(41).expect("id"),
            policy_id: PolicyId::new(7).expect("id"),
            user_id: UserId::new(1001).expect("id"),
            status: CouponStatus::Issued,
            issued_at: at(),
            expires_at: at() + chrono::Duration::days(30),
            reserved_at: None,
            used_at: None,
            reservation_id: None,
            order_id: None,
            discount_amount: None,
        }
    }

    fn reservation(order: Option<&str>) -> Reservation {
        Reservation {
            id: ReservationId::parse("RESV-1").expect("id"),
            coupon_id: CouponId::new(41).expect("id"),
            user_id: UserId::new(1001).expect("id"),
            order_id: order.map(|o| ExternalRef::parse(o, ExternalRef::ORDER_MAX).expect("order")),
            order_amount: Money::from(45_000),
            discount: Money::from(4_500),
            status: ReservationStatus::Confirmed,
            reserved_at: at(),
            expires_at: at() + chrono::Duration::minutes(10),
            payment_id: Some(ExternalRef::parse("PAY-1", ExternalRef::PAYMENT_MAX).expect("payment")),
            confirmed_at: Some(at()),
            late_confirmation: false,
            cancelled_at: None,
            cancel_reason: None,
        }
    }

    fn encoder() -> JsonEventEncoder {
        JsonEventEncoder::new(ProducedTopics {
            coupon_issued: "coupon.issued".into(),
            coupon_reserved: "coupon.reserved".into(),
            coupon_used: "coupon.used".into(),
            coupon_cancelled: "coupon.cancelled".into(),
            coupon_expired: "coupon.expired".into(),
            coupon_budget: "coupon.budget".into(),
        })
    }

    #[test]
    fn every_produced_envelope_matches_its_schema_exactly() {
        let doc = document();
        let encoder = encoder();
        let (coupon, with_code, first_come) = (coupon(), policy(true), policy(false));
        let (ordered, unordered) = (reservation(Some("ORDER-1")), reservation(None));
        let revocation = Revocation { reason: "wrong account".into(), revoked_by: "support-17".into() };
        let events = [
            ("CouponIssuedEnvelope", CouponEvent::Issued { coupon: &coupon, policy: &with_code }),
            ("CouponIssuedEnvelope", CouponEvent::Issued { coupon: &coupon, policy: &first_come }),
            ("CouponReservedEnvelope", CouponEvent::Reserved { reservation: &unordered }),
            ("CouponUsedEnvelope", CouponEvent::Used { reservation: &ordered, used_at: at() }),
            (
                "CouponCancelledEnvelope",
                CouponEvent::Cancelled {
                    reservation: &ordered,
                    reason: CancelReason::ReservationTimeout,
                    cancelled_at: at(),
                },
            ),
            (
                "CouponCancelledEnvelope",
                CouponEvent::Revoked { coupon: &coupon, revocation: &revocation, revoked_at: at() },
            ),
            (
                "CouponExpiredEnvelope",
                CouponEvent::Expired { coupon: &coupon, reason: ExpiryReason::ValidityPeriod },
            ),
            (
                "CouponExpiredEnvelope",
                CouponEvent::Expired { coupon: &coupon, reason: ExpiryReason::PolicyDeactivated },
            ),
            (
                "CouponBudgetThresholdEnvelope",
                CouponEvent::BudgetThreshold {
                    policy: PolicyId::new(7).expect("id"),
                    threshold: 80,
                    budget: Budget { amount: Money::from(1_000_000), used: Money::from(812_500) },
                },
            ),
        ];
        for origin in [Origin::Service, Origin::Admin] {
            let context = EventContext { origin, ..EventContext::new("corr-1".into(), at()) };
            for (schema_name, event) in &events {
                let encoded = encoder.encode(event, &context).expect("encodes");
                assert_matches(&doc, schema_name, &encoded.payload);
                let address = doc
                    .pointer("/channels")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .find_map(|(_, c)| (c["address"] == encoded.topic.as_str()).then_some(()));
                assert!(address.is_some(), "{} has a channel", encoded.topic);
            }
        }
        let source = Source {
            topic: "payment.completed.v1".into(),
            partition: 2,
            dead_letter_topic: "payment.completed.v1.DLQ".into(),
        };
        let delivery = Delivery {
            offset: 9,
            key: Some(vec![0xff]),
            value: b"{not json".to_vec(),
            parsed: Err("MALFORMED_JSON".into()),
        };
        let refusal = Refusal::new("MALFORMED_JSON");
        let letter = DeadLetter { source: &source, delivery: &delivery, refusal: &refusal, failed_at: at() };
        assert_matches(&doc, "DeadLetter", &encoder.dead_letter(&letter).expect("encodes").payload);
    }

    #[test]
    fn every_consumed_example_reads_into_a_command() {
        let doc = document();
        for (message, kind) in [
            ("PaymentCompleted", Inbound::PaymentCompleted),
            ("PaymentFailed", Inbound::PaymentFailed),
            ("OrderCancelled", Inbound::OrderCancelled),
            ("CouponIssueRequested", Inbound::IssueRequested),
        ] {
            let example = &doc["components"]["messages"][message]["examples"][0]["payload"];
            let mut errors = Vec::new();
            check(&doc, schema(&doc, &format!("{message}Envelope")), example, message, &mut errors);
            assert!(errors.is_empty(), "{message}: {errors:#?}");
            let delivery = kind.delivery(0, None, Some(example.to_string().as_bytes()));
            let parsed = delivery.parsed.unwrap_or_else(|reason| panic!("{message}: {reason}"));
            assert!(!matches!(parsed.command, Command::Nothing), "{message} changes something");
            assert_eq!(doc["components"]["messages"][message]["name"], kind.event_type());
        }
    }
}
