//! Unit tests of the rules and the use case, over the in-memory fakes.

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::budget::Budget;
use crate::coupon::{CouponStatus, IssuedCoupon};
use crate::event::CouponEvent;
use crate::fakes::policy;
use crate::id::{CouponId, UserId};
use crate::lifecycle::Forbidden;
use crate::money::Money;
use crate::policy::DistributionType;
use crate::stacking::{OrderStack, Rejoin, Share};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 10, 10, 0, 0).single().unwrap_or_else(|| panic!("valid instant"))
}

fn id(raw: &str) -> ReservationId {
    ReservationId::parse(raw).unwrap_or_else(|e| panic!("{e}"))
}

fn order(raw: &str) -> ExternalRef {
    ExternalRef::parse(raw, ExternalRef::ORDER_MAX).unwrap_or_else(|e| panic!("{e}"))
}

fn user(n: i64) -> UserId {
    UserId::new(n).unwrap_or_else(|| panic!("user {n}"))
}

fn coupon(status: CouponStatus, held_by: Option<&str>) -> IssuedCoupon {
    IssuedCoupon {
        id: CouponId::new(7).unwrap_or_else(|| panic!("coupon id")),
        policy_id: crate::id::PolicyId::new(1).unwrap_or_else(|| panic!("policy id")),
        user_id: user(42),
        status,
        issued_at: t0() - chrono::Duration::days(1),
        expires_at: t0() + chrono::Duration::days(1),
        reserved_at: held_by.map(|_| t0()),
        used_at: None,
        reservation_id: held_by.map(str::to_owned),
        order_id: None,
        discount_amount: None,
    }
}

fn reservation(raw: &str, status: ReservationStatus) -> Reservation {
    Reservation {
        id: id(raw),
        coupon_id: CouponId::new(7).unwrap_or_else(|| panic!("coupon id")),
        user_id: user(42),
        order_id: Some(order("ORDER-1")),
        order_amount: Money::from(50_000),
        discount: Money::from(1_000),
        status,
        reserved_at: t0(),
        expires_at: t0() + chrono::Duration::minutes(10),
        payment_id: None,
        confirmed_at: None,
        late_confirmation: false,
        cancelled_at: None,
        cancel_reason: None,
    }
}

fn request(raw: &str, amount: i64) -> ReserveRequest {
    ReserveRequest {
        reservation_id: id(raw),
        user: user(42),
        coupon: CouponId::new(7).unwrap_or_else(|| panic!("coupon id")),
        order_amount: Money::from(amount),
        order_id: Some(order("ORDER-1")),
    }
}

fn reserve_view(status: CouponStatus, existing: Option<Reservation>) -> ReserveView {
    ReserveView {
        coupon: coupon(status, None),
        policy: policy(1, DistributionType::Download, None, t0()),
        existing,
        budget: None,
        order: OrderStack::default(),
    }
}

fn rules() -> CheckoutRules {
    CheckoutRules { max_per_order: 2, ..CheckoutRules::default() }
}

#[test]
fn a_free_coupon_is_held_with_the_policy_discount() {
    let decision =
        decide_reserve(&reserve_view(CouponStatus::Issued, None), &request("R1", 50_000), t0(), &rules());
    let hold = ReserveDecision::Hold(HoldTerms {
        discount: Money::from(1_000),
        share: Some(Share::Exclusive),
        budget: None,
    });
    assert_eq!(decision.ok(), Some(hold));
}

#[test]
fn an_order_holds_one_exclusive_coupon_or_a_few_stackable_ones() {
    let mut view = reserve_view(CouponStatus::Issued, None);
    view.order = OrderStack { exclusive: true, stackable: 0 };
    assert!(matches!(
        decide_reserve(&view, &request("R1", 50_000), t0(), &rules()),
        Err(ReserveError::NotStackable(_))
    ));
    view.policy.stackable = true;
    view.order = OrderStack { exclusive: false, stackable: 1 };
    let decision = decide_reserve(&view, &request("R1", 50_000), t0(), &rules());
    assert!(matches!(decision, Ok(ReserveDecision::Hold(HoldTerms { share: Some(Share::Stackable), .. }))));
    view.order = OrderStack { exclusive: false, stackable: 2 };
    assert!(matches!(
        decide_reserve(&view, &request("R1", 50_000), t0(), &rules()),
        Err(ReserveError::NotStackable(_))
    ));
    let mut without_order = request("R1", 50_000);
    without_order.order_id = None;
    assert!(matches!(
        decide_reserve(&view, &without_order, t0(), &rules()),
        Ok(ReserveDecision::Hold(HoldTerms { share: None, .. }))
    ));
}

#[test]
fn a_hold_takes_its_discount_from_the_budget_or_is_refused() {
    let mut view = reserve_view(CouponStatus::Issued, None);
    view.budget = Some(Budget { amount: Money::from(1_500), used: Money::from(0) });
    let Ok(ReserveDecision::Hold(HoldTerms { budget: Some(after), .. })) =
        decide_reserve(&view, &request("R1", 50_000), t0(), &rules())
    else {
        panic!("held");
    };
    assert_eq!(after.used, Money::from(1_000));
    view.budget = Some(after);
    assert!(matches!(
        decide_reserve(&view, &request("R2", 50_000), t0(), &rules()),
        Err(ReserveError::BudgetExhausted(_))
    ));
}

#[test]
fn reserve_refusals() {
    let view = reserve_view(CouponStatus::Issued, None);
    let mut other = request("R1", 50_000);
    other.user = user(43);
    assert!(matches!(decide_reserve(&view, &other, t0(), &rules()), Err(ReserveError::NotOwner)));
    let after_expiry = t0() + chrono::Duration::days(2);
    assert!(matches!(
        decide_reserve(&view, &request("R1", 50_000), after_expiry, &rules()),
        Err(ReserveError::Forbidden(Forbidden::Expired))
    ));
    assert!(matches!(
        decide_reserve(&reserve_view(CouponStatus::Reserved, None), &request("R2", 50_000), t0(), &rules()),
        Err(ReserveError::Forbidden(Forbidden::NotAvailable))
    ));
    assert!(matches!(
        decide_reserve(&reserve_view(CouponStatus::Used, None), &request("R2", 50_000), t0(), &rules()),
        Err(ReserveError::Forbidden(Forbidden::AlreadyUsed))
    ));
}

#[test]
fn the_same_reservation_id_replays_only_the_same_request() {
    let pending = reservation("R1", ReservationStatus::Pending);
    let view = reserve_view(CouponStatus::Reserved, Some(pending.clone()));
    assert_eq!(
        decide_reserve(&view, &request("R1", 50_000), t0(), &rules()).ok(),
        Some(ReserveDecision::Replay(pending))
    );
    assert!(matches!(
        decide_reserve(&view, &request("R1", 60_000), t0(), &rules()),
        Err(ReserveError::IdConflict(_))
    ));
    let ended = |status| reserve_view(CouponStatus::Issued, Some(reservation("R1", status)));
    assert!(matches!(
        decide_reserve(&ended(ReservationStatus::Cancelled), &request("R1", 50_000), t0(), &rules()),
        Err(ReserveError::IdReleased(_))
    ));
    assert!(matches!(
        decide_reserve(&ended(ReservationStatus::Expired), &request("R1", 50_000), t0(), &rules()),
        Err(ReserveError::IdExpired(_))
    ));
}

fn confirm(payment: &str) -> ConfirmRequest {
    ConfirmRequest {
        reservation_id: id("R1"),
        order_id: order("ORDER-1"),
        payment_id: Some(
            ExternalRef::parse(payment, ExternalRef::PAYMENT_MAX).unwrap_or_else(|e| panic!("{e}")),
        ),
        user: None,
        payment: None,
    }
}

fn confirm_view(status: ReservationStatus, coupon: IssuedCoupon, superseded: bool) -> ConfirmView {
    ConfirmView { reservation: reservation("R1", status), coupon, superseded, rejoin: None, budget: None }
}

#[test]
fn a_pending_hold_is_confirmed_late_only_after_its_timeout() {
    let view = confirm_view(ReservationStatus::Pending, coupon(CouponStatus::Reserved, Some("R1")), false);
    assert_eq!(decide_confirm(&view, &confirm("P1"), t0()).ok(), Some(ConfirmDecision::Use { late: false }));
    let later = t0() + chrono::Duration::minutes(11);
    assert_eq!(decide_confirm(&view, &confirm("P1"), later).ok(), Some(ConfirmDecision::Use { late: true }));
    let mut wrong_order = confirm("P1");
    wrong_order.order_id = order("ORDER-2");
    assert!(matches!(decide_confirm(&view, &wrong_order, t0()), Err(ConfirmError::OrderMismatch)));
    let mut stranger = confirm("P1");
    stranger.user = Some(user(43));
    assert!(matches!(decide_confirm(&view, &stranger, t0()), Err(ConfirmError::NotOwner)));
}

#[test]
fn a_payment_for_another_user_coupon_or_order_changes_nothing() {
    let view = confirm_view(ReservationStatus::Pending, coupon(CouponStatus::Reserved, Some("R1")), false);
    let paid = |claims: PaymentClaims| ConfirmRequest { payment: Some(claims), ..confirm("P1") };
    let matching =
        PaymentClaims { user: Some(user(42)), coupon: CouponId::new(7), order: Some(order("ORDER-1")) };
    assert_eq!(
        decide_confirm(&view, &paid(matching.clone()), t0()).ok(),
        Some(ConfirmDecision::Use { late: false })
    );
    assert_eq!(
        decide_confirm(&view, &paid(PaymentClaims::default()), t0()).ok(),
        Some(ConfirmDecision::Use { late: false }),
        "fields a payment leaves out are not compared"
    );
    let forged =
        PaymentClaims { user: Some(user(43)), coupon: CouponId::new(8), order: Some(order("ORDER-2")) };
    let Err(ConfirmError::PaymentMismatch(PaymentMismatch(fields))) =
        decide_confirm(&view, &paid(forged), t0())
    else {
        panic!("a forged payment must be refused")
    };
    let named: Vec<(&str, &str, &str)> =
        fields.iter().map(|m| (m.field, m.expected.as_str(), m.received.as_str())).collect();
    assert_eq!(named, [("userId", "42", "43"), ("couponId", "7", "8"), ("orderId", "ORDER-1", "ORDER-2")]);
    let mut confirmed = view.clone();
    confirmed.reservation.status = ReservationStatus::Confirmed;
    let other_user = PaymentClaims { user: Some(user(43)), ..matching };
    assert!(
        matches!(decide_confirm(&confirmed, &paid(other_user), t0()), Err(ConfirmError::PaymentMismatch(_))),
        "checked before any replay"
    );
}

#[test]
fn a_confirmation_replays_for_the_same_payment_only() {
    let mut view = confirm_view(ReservationStatus::Confirmed, coupon(CouponStatus::Used, Some("R1")), false);
    view.reservation.payment_id = confirm("P1").payment_id;
    assert_eq!(decide_confirm(&view, &confirm("P1"), t0()).ok(), Some(ConfirmDecision::Replay));
    assert!(matches!(decide_confirm(&view, &confirm("P2"), t0()), Err(ConfirmError::UsedByAnotherPayment)));
    let released = confirm_view(ReservationStatus::Cancelled, coupon(CouponStatus::Issued, None), false);
    assert!(matches!(decide_confirm(&released, &confirm("P1"), t0()), Err(ConfirmError::Released)));
}

#[test]
fn the_late_confirmation_rule_of_spec_4_4() {
    let later = t0() + chrono::Duration::minutes(11);
    let free = confirm_view(ReservationStatus::Expired, coupon(CouponStatus::Issued, None), false);
    assert_eq!(decide_confirm(&free, &confirm("P1"), later).ok(), Some(ConfirmDecision::Use { late: true }));
    let refused = [
        (
            "re-reserved and held",
            confirm_view(ReservationStatus::Expired, coupon(CouponStatus::Reserved, Some("R2")), true),
        ),
        (
            "re-reserved and released",
            confirm_view(ReservationStatus::Expired, coupon(CouponStatus::Issued, None), true),
        ),
        ("used", confirm_view(ReservationStatus::Expired, coupon(CouponStatus::Used, Some("R2")), true)),
        (
            "expired by the job",
            confirm_view(ReservationStatus::Expired, coupon(CouponStatus::Expired, None), false),
        ),
        (
            "its order taken by another coupon",
            ConfirmView {
                rejoin: Some(Rejoin {
                    share: Share::Exclusive,
                    stack: OrderStack { exclusive: false, stackable: 1 },
                    cap: 5,
                }),
                ..free.clone()
            },
        ),
        (
            "its budget spent",
            ConfirmView {
                budget: Some(Budget { amount: Money::from(1_500), used: Money::from(1_000) }),
                ..free.clone()
            },
        ),
    ];
    for (case, view) in refused {
        assert!(matches!(decide_confirm(&view, &confirm("P1"), later), Err(ConfirmError::Expired)), "{case}");
    }
    let past_date = t0() + chrono::Duration::days(2);
    assert!(
        matches!(decide_confirm(&free, &confirm("P1"), past_date), Err(ConfirmError::Expired)),
        "expired by date"
    );
}

#[test]
fn release_and_restore_rules() {
    let pending = reservation("R1", ReservationStatus::Pending);
    assert_eq!(decide_release(&pending, ReleasedBy::Owner(user(42))).ok(), Some(ReleaseDecision::Free));
    assert!(matches!(decide_release(&pending, ReleasedBy::Owner(user(43))), Err(ReleaseError::NotOwner)));
    let expired = reservation("R1", ReservationStatus::Expired);
    assert_eq!(decide_release(&expired, ReleasedBy::Service).ok(), Some(ReleaseDecision::Replay));
    let confirmed = reservation("R1", ReservationStatus::Confirmed);
    assert!(matches!(decide_release(&confirmed, ReleasedBy::Service), Err(ReleaseError::AlreadyUsed)));
    let stranger = PaymentClaims { user: Some(user(43)), ..PaymentClaims::default() };
    assert!(matches!(
        decide_release(&pending, ReleasedBy::Payment(&stranger)),
        Err(ReleaseError::PaymentMismatch(_))
    ));
    let same = PaymentClaims { user: Some(user(42)), ..PaymentClaims::default() };
    assert_eq!(decide_release(&pending, ReleasedBy::Payment(&same)).ok(), Some(ReleaseDecision::Free));

    let view = |status, coupon| RestoreView { coupon, reservation: Some(reservation("R1", status)) };
    let used = coupon(CouponStatus::Used, Some("R1"));
    assert_eq!(
        decide_restore(&view(ReservationStatus::Confirmed, used.clone()), t0()).ok(),
        Some(RestoreDecision::Restore { expired: false })
    );
    let past_date = t0() + chrono::Duration::days(2);
    assert_eq!(
        decide_restore(&view(ReservationStatus::Confirmed, used), past_date).ok(),
        Some(RestoreDecision::Restore { expired: true })
    );
    let held = coupon(CouponStatus::Reserved, Some("R1"));
    assert_eq!(
        decide_restore(&view(ReservationStatus::Pending, held), t0()).ok(),
        Some(RestoreDecision::Release)
    );
    let used_by_other = coupon(CouponStatus::Used, Some("R2"));
    assert!(matches!(
        decide_restore(&view(ReservationStatus::Confirmed, used_by_other), t0()),
        Err(RestoreError::OrderMismatch)
    ));
    let restored = coupon(CouponStatus::Issued, None);
    assert_eq!(
        decide_restore(&view(ReservationStatus::Cancelled, restored.clone()), t0()).ok(),
        Some(RestoreDecision::Replay)
    );
    assert!(matches!(
        decide_restore(&RestoreView { coupon: restored, reservation: None }, t0()),
        Err(RestoreError::NotFound)
    ));
}

#[test]
fn external_references() {
    assert!(ExternalRef::parse("ORDER-2024-0001", ExternalRef::ORDER_MAX).is_ok());
    assert!(ExternalRef::parse("", ExternalRef::ORDER_MAX).is_err());
    assert!(ExternalRef::parse(&"x".repeat(51), ExternalRef::ORDER_MAX).is_err());
    assert!(ExternalRef::parse("a\nb", ExternalRef::ORDER_MAX).is_err());
    let mut r = reservation("R1", ReservationStatus::Pending);
    r.discount = Money::from(5_000);
    assert_eq!(r.final_amount(), Money::from(45_000));
}

#[test]
fn reservation_ids_are_kept_as_given() {
    assert_eq!(
        ReservationId::parse("RESV-2024_0001").map(|r| r.as_str().to_owned()),
        Ok("RESV-2024_0001".to_owned())
    );
    for bad in ["", " RESV", "a b", "résa", &"x".repeat(51)] {
        assert_eq!(ReservationId::parse(bad), Err(InvalidReservationId), "{bad:?}");
    }
    assert!(ReservationId::parse(&"x".repeat(50)).is_ok());
    assert_eq!(ReservationStatus::parse("PENDING"), Some(ReservationStatus::Pending));
    assert_eq!(ReservationStatus::parse("pending"), None);
}

#[test]
fn each_transition_yields_the_state_and_the_event_that_records_it() {
    let now = t0() + chrono::Duration::minutes(1);
    let held = Reservation::hold(
        &request("R1", 50_000),
        Money::from(1_000),
        t0(),
        t0() + chrono::Duration::minutes(10),
    );
    assert_eq!(held.reservation.status, ReservationStatus::Pending);
    assert!(matches!(held.event(), CouponEvent::Reserved { reservation } if reservation.id == id("R1")));

    let used = held.reservation.clone().confirm(&confirm("P1"), true, now);
    assert_eq!(used.reservation.status, ReservationStatus::Confirmed);
    assert_eq!((used.reservation.confirmed_at, used.reservation.late_confirmation), (Some(now), true));
    assert!(matches!(used.event(), CouponEvent::Used { used_at, .. } if used_at == now));

    let timed_out = held.reservation.clone().time_out(now);
    assert_eq!(timed_out.reservation.status, ReservationStatus::Expired);
    assert_eq!(timed_out.reservation.cancel_reason.as_deref(), Some("RESERVATION_TIMEOUT"));
    assert!(matches!(
        timed_out.event(),
        CouponEvent::Cancelled { reason: CancelReason::ReservationTimeout, cancelled_at, .. } if cancelled_at == now
    ));

    let cancelled = held.reservation.cancel(CancelReason::PaymentFailed, now);
    assert_eq!(cancelled.reservation.status, ReservationStatus::Cancelled);
    assert_eq!(cancelled.reservation.cancel_reason.as_deref(), Some("PAYMENT_FAILED"));
    assert!(matches!(
        cancelled.event(),
        CouponEvent::Cancelled { reason: CancelReason::PaymentFailed, cancelled_at, .. } if cancelled_at == now
    ));
}

#[test]
fn a_restored_coupon_forgets_its_use() {
    let used =
        IssuedCoupon { discount_amount: Some(Money::from(1_000)), ..coupon(CouponStatus::Used, Some("R1")) };
    let restored = used.clone().restored(false);
    assert_eq!(
        (restored.status, restored.reservation_id, restored.discount_amount),
        (CouponStatus::Issued, None, None)
    );
    assert_eq!(used.restored(true).status, CouponStatus::Expired);
}
