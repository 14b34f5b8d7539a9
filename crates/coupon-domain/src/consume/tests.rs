//! Refusal reasons and the consumed-record use case, over an in-memory store.

use super::*;

fn code(refusal: Result<Refusal, StoreError>) -> String {
    refusal.expect("a refusal, not a store error").reason
}

#[test]
fn each_refusal_has_its_spec_reason() {
    assert_eq!(code(ConfirmError::Expired.refusal()), "RESERVATION_EXPIRED");
    assert_eq!(code(ConfirmError::UsedByAnotherPayment.refusal()), "COUPON_USED_BY_ANOTHER_ORDER");
    assert_eq!(code(ConfirmError::Released.refusal()), "RESERVATION_CANCELLED");
    assert_eq!(code(ReleaseError::AlreadyUsed.refusal()), "COUPON_ALREADY_USED");
    assert_eq!(code(RestoreError::OrderMismatch.refusal()), "COUPON_USED_BY_ANOTHER_ORDER");
    assert_eq!(code(IssueError::NotIssuable(NotIssuable::SoldOut).refusal()), "COUPON_SOLD_OUT");
    assert_eq!(code(IssueError::CodeNotFound.refusal()), "POLICY_NOT_FOUND");
}

#[test]
fn a_mismatch_carries_its_fields_and_a_store_failure_is_no_refusal() {
    let mismatch = Mismatch { field: "orderId", expected: "O-1".into(), received: "O-2".into() };
    let refusal = ConfirmError::PaymentMismatch(PaymentMismatch(vec![mismatch.clone()])).refusal();
    assert_eq!(refusal.ok(), Some(Refusal { reason: "PAYMENT_MISMATCH".into(), mismatches: vec![mismatch] }));
    let down = StoreError::Unavailable("pool timed out".into());
    assert!(ReleaseError::Store(down).refusal().is_err());
}

#[test]
fn a_failed_payment_releases_as_the_payment_and_an_issue_request_goes_through_event() {
    let id = ReservationId::parse("R-1").expect("id");
    let payment = PaymentClaims { user: None, coupon: None, order: None };
    let release = Command::Release { reservation_id: id, payment };
    assert!(matches!(
        release.intent(),
        Intent::Release { by: ReleasedBy::Payment(_), reason: CancelReason::PaymentFailed, .. }
    ));
    let (policy, user) = (PolicyId::new(3).expect("policy"), UserId::new(4).expect("user"));
    assert!(matches!(
        Command::Issue { policy, user }.intent(),
        Intent::Issue { channel: DistributionType::Event, .. }
    ));
}

#[test]
fn the_code_drops_the_detail() {
    assert_eq!(Refusal::new("PROCESSING_FAILED: connection reset").code(), "PROCESSING_FAILED");
    assert_eq!(Refusal::new("MALFORMED_JSON").code(), "MALFORMED_JSON");
}

mod records {
    use std::collections::HashSet;

    use chrono::{DateTime, TimeZone, Utc};
    use chrono_tz::Tz;

    use crate::consume::{
        Command, Confirmation, DeadLetter, Delivery, Outcome, Parsed, RecordEffects, Records, Source,
        apply_records,
    };
    use crate::context::EventContext;
    use crate::fakes::{block_on, policy};
    use crate::id::{CouponId, PolicyId, UserId};
    use crate::issue::{IssueCommand, IssueError};
    use crate::policy::{DistributionType, Policy};
    use crate::port::{PortFuture, StoreError};
    use crate::reservation::{
        CancelReason, ConfirmError, ConfirmRequest, ExternalRef, PaymentClaims, ReleaseError, ReleasedBy,
        ReservationId, RestoreError,
    };

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 10, 0, 0).single().expect("instant")
    }

    /// The store's side, scripted: what it holds and refuses, and a log of what it was asked.
    #[derive(Default)]
    struct Script {
        applied: Vec<String>,
        /// Reservations whose confirmation finds them expired and moved on.
        late: Vec<String>,
        policies: Vec<Policy>,
        /// The next release fails as a store failure.
        down: bool,
        log: Vec<String>,
    }

    impl RecordEffects for Script {
        fn applied_before<'a>(
            &'a mut self,
            _topic: &'a str,
            event_ids: &'a [&'a str],
        ) -> PortFuture<'a, Result<HashSet<String>, StoreError>> {
            let seen = event_ids.iter().filter(|id| self.applied.contains(&(**id).to_owned()));
            let seen: HashSet<String> = seen.map(|id| (*id).to_owned()).collect();
            Box::pin(async move { Ok(seen) })
        }

        fn confirm<'a>(
            &'a mut self,
            confirmations: &'a [Confirmation<'a>],
            _now: DateTime<Utc>,
        ) -> PortFuture<'a, Result<Vec<Result<(), ConfirmError>>, StoreError>> {
            let ids: Vec<&str> = confirmations.iter().map(|c| c.request.reservation_id.as_str()).collect();
            self.log.push(format!("confirm {}", ids.join(",")));
            let answers =
                ids.iter()
                    .map(|id| {
                        if self.late.contains(&(*id).to_owned()) {
                            Err(ConfirmError::Expired)
                        } else {
                            Ok(())
                        }
                    })
                    .collect();
            Box::pin(async move { Ok(answers) })
        }

        fn release<'a>(
            &'a mut self,
            reservation: &'a ReservationId,
            by: ReleasedBy<'a>,
            reason: CancelReason,
            _now: DateTime<Utc>,
            _context: &'a EventContext,
        ) -> PortFuture<'a, Result<(), ReleaseError>> {
            assert!(matches!(by, ReleasedBy::Payment(_)));
            self.log.push(format!("release {} {}", reservation.as_str(), reason.as_str()));
            let down = self.down;
            Box::pin(async move {
                if down { Err(ReleaseError::Store(StoreError::Unavailable("down".into()))) } else { Ok(()) }
            })
        }

        fn cancel_order<'a>(
            &'a mut self,
            coupon: CouponId,
            order: &'a ExternalRef,
            _now: DateTime<Utc>,
            _context: &'a EventContext,
        ) -> PortFuture<'a, Result<(), RestoreError>> {
            self.log.push(format!("cancel {coupon} {}", order.as_str()));
            Box::pin(async { Err(RestoreError::OrderMismatch) })
        }

        fn policy(&mut self, id: PolicyId) -> PortFuture<'_, Result<Option<Policy>, StoreError>> {
            let found = self.policies.iter().find(|p| p.id == id).cloned();
            Box::pin(async move { Ok(found) })
        }

        fn issue<'a>(&'a mut self, command: IssueCommand<'a>) -> PortFuture<'a, Result<(), IssueError>> {
            self.log.push(format!("issue {} to {}", command.policy.id, command.user_id));
            Box::pin(async { Ok(()) })
        }

        fn dead_letter<'a>(&'a mut self, letter: DeadLetter<'a>) -> PortFuture<'a, Result<(), StoreError>> {
            self.log.push(format!("dlq {} {}", letter.delivery.offset, letter.refusal.reason));
            Box::pin(async { Ok(()) })
        }
    }

    fn source() -> Source {
        Source {
            topic: "payment.completed".into(),
            partition: 0,
            dead_letter_topic: "payment.completed.DLQ".into(),
        }
    }

    fn record(offset: i64, event_id: &str, command: Command) -> Delivery {
        let parsed = Parsed { event_id: event_id.into(), correlation_id: format!("c-{event_id}"), command };
        Delivery { offset, key: None, value: Vec::new(), parsed: Ok(parsed) }
    }

    fn malformed(offset: i64, reason: &str) -> Delivery {
        Delivery { offset, key: None, value: b"{".to_vec(), parsed: Err(reason.into()) }
    }

    fn reservation(id: &str) -> ReservationId {
        ReservationId::parse(id).expect("reservation id")
    }

    fn confirm(id: &str) -> Command {
        Command::Confirm(ConfirmRequest {
            reservation_id: reservation(id),
            order_id: ExternalRef::parse("O-1", ExternalRef::ORDER_MAX).expect("order"),
            payment_id: None,
            user: None,
            payment: Some(PaymentClaims::default()),
        })
    }

    fn run(script: &mut Script, deliveries: &[Delivery]) -> Result<Vec<Outcome>, StoreError> {
        let source = source();
        block_on(apply_records(script, Records { source: &source, deliveries, now: now(), zone: Tz::UTC }))
    }

    fn dead(reason: &str) -> Outcome {
        Outcome::DeadLettered(reason.into())
    }

    #[test]
    fn a_record_applied_before_or_earlier_in_the_batch_is_a_duplicate() {
        let mut script = Script { applied: vec!["e1".into()], ..Script::default() };
        let deliveries =
            [record(0, "e1", confirm("R1")), record(1, "e2", confirm("R2")), record(2, "e2", confirm("R2"))];
        let outcomes = run(&mut script, &deliveries).expect("applied");
        assert_eq!(outcomes, vec![Outcome::Duplicate, Outcome::Applied, Outcome::Duplicate]);
        assert_eq!(script.log, vec!["confirm R2"]);
    }

    #[test]
    fn confirmations_of_distinct_reservations_go_together_and_a_repeat_starts_the_next_round() {
        let mut script = Script { late: vec!["R2".into()], ..Script::default() };
        let deliveries = [
            record(0, "e1", confirm("R1")),
            record(1, "e2", confirm("R2")),
            record(2, "e3", confirm("R1")),
            record(3, "e4", confirm("R3")),
        ];
        let outcomes = run(&mut script, &deliveries).expect("applied");
        assert_eq!(
            outcomes,
            vec![Outcome::Applied, dead("RESERVATION_EXPIRED"), Outcome::Applied, Outcome::Applied]
        );
        assert_eq!(script.log, vec!["confirm R1,R2", "dlq 1 RESERVATION_EXPIRED", "confirm R1,R3"]);
    }

    #[test]
    fn dead_letters_keep_the_order_of_their_records() {
        let mut script = Script::default();
        let order = ExternalRef::parse("O-9", ExternalRef::ORDER_MAX).expect("order");
        let coupon = CouponId::new(7).expect("coupon");
        let deliveries = [
            record(0, "e1", confirm("R1")),
            malformed(1, "MALFORMED_JSON"),
            record(2, "e3", Command::CancelOrder { coupon, order }),
            record(3, "e4", Command::Nothing),
        ];
        let outcomes = run(&mut script, &deliveries).expect("applied");
        assert_eq!(
            outcomes,
            vec![
                Outcome::Applied,
                dead("MALFORMED_JSON"),
                dead("COUPON_USED_BY_ANOTHER_ORDER"),
                Outcome::Nothing
            ]
        );
        assert_eq!(
            script.log,
            vec!["confirm R1", "dlq 1 MALFORMED_JSON", "cancel 7 O-9", "dlq 2 COUPON_USED_BY_ANOTHER_ORDER"]
        );
    }

    #[test]
    fn an_issue_request_follows_the_policy_and_its_refusals_go_to_the_dlq() {
        let mut inactive = policy(2, DistributionType::Event, None, now());
        inactive.is_active = false;
        let mut script = Script {
            policies: vec![policy(1, DistributionType::Event, None, now()), inactive],
            ..Script::default()
        };
        let user = UserId::new(5).expect("user");
        let ask = |id| Command::Issue { policy: PolicyId::new(id).expect("policy"), user };
        let deliveries = [record(0, "e1", ask(1)), record(1, "e2", ask(2)), record(2, "e3", ask(3))];
        let outcomes = run(&mut script, &deliveries).expect("applied");
        assert_eq!(outcomes, vec![Outcome::Applied, dead("POLICY_INACTIVE"), dead("POLICY_NOT_FOUND")]);
        assert_eq!(script.log, vec!["issue 1 to 5", "dlq 1 POLICY_INACTIVE", "dlq 2 POLICY_NOT_FOUND"]);
    }

    #[test]
    fn a_failed_payment_releases_its_reservation_and_a_store_failure_stops_the_batch() {
        let failed =
            || Command::Release { reservation_id: reservation("R1"), payment: PaymentClaims::default() };
        let mut script = Script::default();
        assert_eq!(run(&mut script, &[record(0, "e1", failed())]).expect("applied"), vec![Outcome::Applied]);
        assert_eq!(script.log, vec!["release R1 PAYMENT_FAILED"]);
        let mut script = Script { down: true, ..Script::default() };
        assert!(matches!(run(&mut script, &[record(0, "e1", failed())]), Err(StoreError::Unavailable(_))));
    }
}
