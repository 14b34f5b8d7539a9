//! Consumed records (SPEC §6, `event-specification.ko.md`): the envelope and payload of
//! `payment.completed`, `payment.failed`, `order.cancelled` and `coupon.issue-requested`
//! (`{policyId, userId}`), read into the domain's commands.
//!
//! A record that cannot be read is not an error of the consumer: it becomes a `Delivery` whose
//! reason sends it to the DLQ (`MALFORMED_JSON`, `UNKNOWN_EVENT_TYPE`, `INVALID_EVENT`), whatever
//! its bytes. Every value that reaches PostgreSQL is bounded here: `eventId` is 1–100 characters
//! without control characters (else `INVALID_EVENT`, SPEC §10), and a `correlationId` that is not
//! (too long, control characters) is replaced by the `eventId` rather than refusing a payment for
//! its metadata. `payment.*` without a `reservationId`, and `order.cancelled` without a `couponId`,
//! involve no coupon: they are committed with nothing to do. A payment's `userId`, `couponId` and
//! `orderId` are its claims about the reservation, checked against it by the domain (SPEC §10).

use coupon_domain::consume::{Command, Delivery, Parsed};
use coupon_domain::id::{CouponId, PolicyId, UserId};
use coupon_domain::reservation::{ConfirmRequest, ExternalRef, PaymentClaims, ReservationId};
use serde_json::Value;

/// Which consumed topic a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    PaymentCompleted,
    PaymentFailed,
    OrderCancelled,
    IssueRequested,
}

impl Inbound {
    /// The `eventType` records of this topic carry.
    pub fn event_type(self) -> &'static str {
        match self {
            Inbound::PaymentCompleted => "PAYMENT_COMPLETED",
            Inbound::PaymentFailed => "PAYMENT_FAILED",
            Inbound::OrderCancelled => "ORDER_CANCELLED",
            Inbound::IssueRequested => "COUPON_ISSUE_REQUESTED",
        }
    }

    /// A record at `offset` as the inbox takes it.
    pub fn delivery(self, offset: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Delivery {
        let value = value.unwrap_or_default();
        Delivery { offset, key: key.map(<[u8]>::to_vec), value: value.to_vec(), parsed: self.parse(value) }
    }

    fn parse(self, value: &[u8]) -> Result<Parsed, String> {
        let envelope: Value = serde_json::from_slice(value).map_err(|_| "MALFORMED_JSON".to_owned())?;
        if !envelope.is_object() {
            return Err("MALFORMED_JSON".into());
        }
        let event_id = text(&envelope, "eventId").filter(|id| bounded_id(id)).ok_or_else(invalid)?.to_owned();
        if envelope.get("eventType").and_then(Value::as_str) != Some(self.event_type()) {
            return Err("UNKNOWN_EVENT_TYPE".into());
        }
        if let Some(metadata) = envelope.get("metadata")
            && !readable_version(metadata)
        {
            return Err("UNSUPPORTED_VERSION".into());
        }
        let correlation_id = envelope
            .get("metadata")
            .and_then(|m| text(m, "correlationId"))
            .filter(|id| bounded_id(id))
            .unwrap_or(&event_id)
            .to_owned();
        let data = envelope.get("data").filter(|d| d.is_object()).ok_or_else(invalid)?;
        let command = match self {
            Inbound::PaymentCompleted => match reservation(data)? {
                None => Command::Nothing,
                Some(reservation_id) => {
                    let payment = claims(data)?;
                    Command::Confirm(ConfirmRequest {
                        reservation_id,
                        order_id: payment.order.clone().ok_or_else(invalid)?,
                        payment_id: reference(data, "paymentId", ExternalRef::PAYMENT_MAX)?,
                        user: None,
                        payment: Some(payment),
                    })
                }
            },
            Inbound::PaymentFailed => match reservation(data)? {
                None => Command::Nothing,
                Some(reservation_id) => Command::Release { reservation_id, payment: claims(data)? },
            },
            Inbound::OrderCancelled => match data.get("couponId").filter(|c| !c.is_null()) {
                None => Command::Nothing,
                Some(coupon) => Command::CancelOrder {
                    coupon: coupon.as_i64().and_then(CouponId::new).ok_or_else(invalid)?,
                    order: reference(data, "orderId", ExternalRef::ORDER_MAX)?.ok_or_else(invalid)?,
                },
            },
            Inbound::IssueRequested => Command::Issue {
                policy: data
                    .get("policyId")
                    .and_then(Value::as_i64)
                    .and_then(PolicyId::new)
                    .ok_or_else(invalid)?,
                user: data.get("userId").and_then(Value::as_i64).and_then(UserId::new).ok_or_else(invalid)?,
            },
        };
        Ok(Parsed { event_id, correlation_id, command })
    }
}

/// Whether this service can read a record of the envelope's `metadata.version`: major version 1,
/// or a producer that declares the record readable as a 1.x (`compatibleVersions`). Within a major
/// version fields are only added (the event specification's rules), so 1.x reads any 1.y; a record
/// without a version is read as 1.0.
fn readable_version(metadata: &Value) -> bool {
    let major_one = |v: &Value| v.as_str().is_some_and(|v| v.split('.').next() == Some("1"));
    match metadata.get("version") {
        None | Some(Value::Null) => true,
        Some(version) if major_one(version) => true,
        Some(_) => metadata
            .get("compatibleVersions")
            .and_then(Value::as_array)
            .is_some_and(|versions| versions.iter().any(major_one)),
    }
}

fn invalid() -> String {
    "INVALID_EVENT".into()
}

/// A non-empty string field.
fn text<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get(field).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// An id of another service that this one stores or repeats: 1–100 characters, no control
/// characters (PostgreSQL text cannot hold NUL; `processed_events.event_id` is 100 long).
fn bounded_id(id: &str) -> bool {
    id.chars().count() <= 100 && !id.chars().any(char::is_control)
}

/// What a payment says about its reservation: `userId`, `couponId`, `orderId`, each optional but
/// well-formed when present.
fn claims(data: &Value) -> Result<PaymentClaims, String> {
    let id = |field: &str| match data.get(field).filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(value) => value.as_i64().map(Some).ok_or_else(invalid),
    };
    Ok(PaymentClaims {
        user: id("userId")?.map(|n| UserId::new(n).ok_or_else(invalid)).transpose()?,
        coupon: id("couponId")?.map(|n| CouponId::new(n).ok_or_else(invalid)).transpose()?,
        order: reference(data, "orderId", ExternalRef::ORDER_MAX)?,
    })
}

/// `reservationId`: absent or empty means no coupon is involved; present, it must be valid.
fn reservation(data: &Value) -> Result<Option<ReservationId>, String> {
    text(data, "reservationId").map(|raw| ReservationId::parse(raw).map_err(|_| invalid())).transpose()
}

fn reference(data: &Value, field: &str, max: usize) -> Result<Option<ExternalRef>, String> {
    text(data, field).map(|raw| ExternalRef::parse(raw, max).map_err(|_| invalid())).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(kind: Inbound, value: &str) -> Result<Parsed, String> {
        kind.delivery(0, None, Some(value.as_bytes())).parsed
    }

    /// The SPEC's own example of `payment.completed`.
    const PAYMENT_COMPLETED: &str = r#"{"eventId":"evt_pay_2024010110000001","eventType":"PAYMENT_COMPLETED",
        "timestamp":"2024-01-01T10:05:00Z","data":{"paymentId":"PAY-2024-0001","orderId":"ORDER-2024-0001",
        "userId":12345,"amount":90000,"couponId":1001,"reservationId":"RESV-2024-0001",
        "paymentMethod":"CREDIT_CARD","completedAt":"2024-01-01T10:05:00"},
        "metadata":{"correlationId":"corr_pay_2024010110000001","source":"payment-service","version":"1.0"}}"#;

    #[test]
    fn the_spec_examples_read_into_commands() {
        let p = parsed(Inbound::PaymentCompleted, PAYMENT_COMPLETED).expect("payment.completed");
        assert_eq!(p.event_id, "evt_pay_2024010110000001");
        assert_eq!(p.correlation_id, "corr_pay_2024010110000001");
        let Command::Confirm(request) = p.command else { panic!("{:?}", p.command) };
        assert_eq!(request.reservation_id.as_str(), "RESV-2024-0001");
        assert_eq!(request.order_id.as_str(), "ORDER-2024-0001");
        assert_eq!(request.payment_id.map(|p| p.as_str().to_owned()).as_deref(), Some("PAY-2024-0001"));
        let claims = request.payment.expect("a payment's claims");
        assert_eq!(
            (
                claims.user.map(UserId::get),
                claims.coupon.map(CouponId::get),
                claims.order.map(|o| o.as_str().to_owned())
            ),
            (Some(12345), Some(1001), Some("ORDER-2024-0001".to_owned()))
        );

        let failed = r#"{"eventId":"evt_pay_2","eventType":"PAYMENT_FAILED","data":{"paymentId":"PAY-2",
            "orderId":"ORDER-2","userId":12345,"couponId":1001,"reservationId":"RESV-2",
            "failureReason":"INSUFFICIENT_BALANCE"},"metadata":{"correlationId":"c2"}}"#;
        let p = parsed(Inbound::PaymentFailed, failed).expect("payment.failed");
        assert!(
            matches!(p.command, Command::Release { ref reservation_id, ref payment }
                if reservation_id.as_str() == "RESV-2" && payment.user.map(UserId::get) == Some(12345)),
            "{:?}",
            p.command
        );

        let cancelled = r#"{"eventId":"evt_ord_1","eventType":"ORDER_CANCELLED","data":{"orderId":"ORDER-2024-0001",
            "userId":12345,"couponId":1001,"cancelReason":"CUSTOMER_REQUEST"}}"#;
        let p = parsed(Inbound::OrderCancelled, cancelled).expect("order.cancelled");
        assert_eq!(p.correlation_id, "evt_ord_1", "no metadata: the eventId correlates");
        assert!(
            matches!(p.command, Command::CancelOrder { coupon, ref order } if coupon.get() == 1001 && order.as_str() == "ORDER-2024-0001"),
            "{:?}",
            p.command
        );
    }

    #[test]
    fn an_issue_request_names_policy_and_user() {
        let request =
            r#"{"eventId":"e9","eventType":"COUPON_ISSUE_REQUESTED","data":{"policyId":7,"userId":12345}}"#;
        let p = parsed(Inbound::IssueRequested, request).expect("coupon.issue-requested");
        assert!(
            matches!(p.command, Command::Issue { policy, user } if policy.get() == 7 && user.get() == 12345),
            "{:?}",
            p.command
        );
        let no_user = r#"{"eventId":"e9","eventType":"COUPON_ISSUE_REQUESTED","data":{"policyId":7}}"#;
        assert_eq!(
            parsed(Inbound::IssueRequested, no_user).map(|p| p.event_id),
            Err("INVALID_EVENT".to_owned())
        );
    }

    #[test]
    fn records_without_a_coupon_are_nothing_to_do() {
        let no_reservation =
            PAYMENT_COMPLETED.replace(r#""reservationId":"RESV-2024-0001""#, r#""reservationId":"""#);
        assert!(matches!(
            parsed(Inbound::PaymentCompleted, &no_reservation).map(|p| p.command),
            Ok(Command::Nothing)
        ));
        let no_coupon =
            r#"{"eventId":"e","eventType":"ORDER_CANCELLED","data":{"orderId":"O","couponId":null}}"#;
        assert!(matches!(
            parsed(Inbound::OrderCancelled, no_coupon).map(|p| p.command),
            Ok(Command::Nothing)
        ));
    }

    #[test]
    fn unreadable_records_name_their_dlq_reason() {
        for (kind, value, reason) in [
            (Inbound::PaymentCompleted, "{not json", "MALFORMED_JSON"),
            (Inbound::PaymentCompleted, "[1,2]", "MALFORMED_JSON"),
            (Inbound::PaymentFailed, PAYMENT_COMPLETED, "UNKNOWN_EVENT_TYPE"),
            (Inbound::PaymentCompleted, r#"{"eventType":"PAYMENT_COMPLETED","data":{}}"#, "INVALID_EVENT"),
            (
                Inbound::PaymentCompleted,
                r#"{"eventId":"e","eventType":"PAYMENT_COMPLETED","data":{"reservationId":"bad id!","orderId":"O"}}"#,
                "INVALID_EVENT",
            ),
            (
                Inbound::PaymentCompleted,
                r#"{"eventId":"e","eventType":"PAYMENT_COMPLETED","data":{"reservationId":"R1"}}"#,
                "INVALID_EVENT",
            ),
            (
                Inbound::OrderCancelled,
                r#"{"eventId":"e","eventType":"ORDER_CANCELLED","data":{"couponId":"x","orderId":"O"}}"#,
                "INVALID_EVENT",
            ),
        ] {
            assert_eq!(parsed(kind, value).map(|p| p.event_id), Err(reason.to_owned()), "{value}");
        }
        let d = Inbound::PaymentCompleted.delivery(9, Some(b"1001"), Some(b"{not json"));
        assert_eq!(
            (d.offset, d.key.as_deref(), d.value.as_slice()),
            (9, Some(&b"1001"[..]), &b"{not json"[..])
        );
    }

    #[test]
    fn an_unknown_major_version_goes_to_the_dlq_unless_declared_compatible() {
        let record = |metadata: &str| {
            format!(
                r#"{{"eventId":"e","eventType":"PAYMENT_COMPLETED","metadata":{metadata},"data":{{"reservationId":"R1","orderId":"O"}}}}"#
            )
        };
        for (metadata, readable) in [
            (r#"{"version":"1.0"}"#, true),
            (r#"{"version":"1.7"}"#, true),
            (r#"{"correlationId":"c"}"#, true),
            (r#"{"version":"2.0"}"#, false),
            (r#"{"version":"2.0","compatibleVersions":["1.0","2.0"]}"#, true),
            (r#"{"version":"2.0","compatibleVersions":["2.0"]}"#, false),
            (r#"{"version":2}"#, false),
        ] {
            let outcome = parsed(Inbound::PaymentCompleted, &record(metadata)).map(|p| p.event_id);
            let expected = if readable { Ok("e".to_owned()) } else { Err("UNSUPPORTED_VERSION".to_owned()) };
            assert_eq!(outcome, expected, "{metadata}");
        }
    }

    /// Values that PostgreSQL cannot store (NUL) or whose columns are bounded never get past the
    /// parser: the record is refused as a whole, never half-applied.
    #[test]
    fn hostile_records_are_refused_or_bounded() {
        let with = |event_id: &str, correlation: &str, data: &str| {
            format!(
                r#"{{"eventId":{event_id},"eventType":"PAYMENT_COMPLETED","data":{data},"metadata":{{"correlationId":{correlation}}}}}"#
            )
        };
        let good_data = r#"{"reservationId":"R1","orderId":"O1","userId":1,"couponId":2}"#;
        for (event_id, data) in [
            (format!("{:?}", "e".repeat(101)), good_data),
            (r#""e\u0000""#.to_owned(), good_data),
            (r#""e\nx""#.to_owned(), good_data),
            (r#"12"#.to_owned(), good_data),
            (r#""e""#.to_owned(), r#"{"reservationId":"R1","orderId":"O1","userId":1e30}"#),
            (r#""e""#.to_owned(), r#"{"reservationId":"R1","orderId":"O1","userId":"1"}"#),
            (r#""e""#.to_owned(), r#"{"reservationId":"R1","orderId":"O1","couponId":-5}"#),
            (r#""e""#.to_owned(), r#"{"reservationId":"R1","orderId":"O\u0000"}"#),
            (r#""e""#.to_owned(), r#"{"reservationId":"R1\u0000","orderId":"O1"}"#),
        ] {
            let value = with(&event_id, r#""c""#, data);
            assert_eq!(
                parsed(Inbound::PaymentCompleted, &value).map(|p| p.event_id),
                Err(invalid()),
                "{value}"
            );
        }
        assert!(
            parsed(Inbound::PaymentCompleted, &with(&format!("{:?}", "e".repeat(100)), r#""c""#, good_data))
                .is_ok()
        );
        for correlation in [format!("{:?}", "c".repeat(101)), r#""c\u0000""#.to_owned(), "7".to_owned()] {
            let p = parsed(Inbound::PaymentCompleted, &with(r#""e1""#, &correlation, good_data))
                .expect("applied");
            assert_eq!(p.correlation_id, "e1", "an unusable correlationId falls back to the eventId");
        }
        let d = Inbound::PaymentCompleted.delivery(1, Some(&[0xff; 150]), Some(&[0xc3, 0x28, 0x00]));
        assert_eq!(d.parsed.map(|p| p.event_id), Err("MALFORMED_JSON".to_owned()));
        assert_eq!((d.key.map(|k| k.len()), d.value.len()), (Some(150), 3), "bytes kept as received");
    }
}
