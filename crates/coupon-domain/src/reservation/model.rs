//! The reservation aggregate and its values: ids, statuses, the requests that change it, and what
//! a payment claims about it.

use chrono::{DateTime, Utc};

use crate::id::{CouponId, UserId};
use crate::money::Money;

/// Status of a reservation (SPEC §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReservationStatus {
    Pending,
    Confirmed,
    Cancelled,
    Expired,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Pending => "PENDING",
            ReservationStatus::Confirmed => "CONFIRMED",
            ReservationStatus::Cancelled => "CANCELLED",
            ReservationStatus::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Confirmed, Self::Cancelled, Self::Expired].into_iter().find(|r| r.as_str() == s)
    }
}

/// A client-chosen reservation id: 1–50 characters of `A-Z a-z 0-9 _ -` (SPEC §4.4), case kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReservationId(String);

/// Why a string is not a reservation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a reservationId is 1 to 50 characters of letters, digits, '_' and '-'")]
pub struct InvalidReservationId;

impl ReservationId {
    /// # Errors
    /// When the input is empty, too long, or has other characters (nothing is trimmed: the id is
    /// the client's key, byte for byte).
    pub fn parse(raw: &str) -> Result<Self, InvalidReservationId> {
        let legal = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if raw.is_empty() || raw.len() > 50 || !raw.chars().all(legal) {
            return Err(InvalidReservationId);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An order or payment reference from another service: 1 to `max` printable characters, kept
/// as given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExternalRef(String);

/// Why a string is not an order or payment reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to {max} characters without control characters")]
pub struct InvalidRef {
    pub max: usize,
}

impl ExternalRef {
    /// Longest order id (`order_id VARCHAR(50)`).
    pub const ORDER_MAX: usize = 50;
    /// Longest payment id (`payment_id VARCHAR(100)`).
    pub const PAYMENT_MAX: usize = 100;

    /// # Errors
    /// Empty, longer than `max` characters, or with control characters.
    pub fn parse(raw: &str, max: usize) -> Result<Self, InvalidRef> {
        if raw.is_empty() || raw.chars().count() > max || raw.chars().any(char::is_control) {
            return Err(InvalidRef { max });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a hold ended without a use (`coupon.cancelled` `data.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CancelReason {
    /// `payment.failed`.
    PaymentFailed,
    /// `order.cancelled` (before payment, or a restore after it).
    OrderCancelled,
    /// The reservation-timeout job.
    ReservationTimeout,
    /// `DELETE /api/coupons/apply/{id}` (or `/reserve/{id}`).
    Released,
}

impl CancelReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::PaymentFailed => "PAYMENT_FAILED",
            CancelReason::OrderCancelled => "ORDER_CANCELLED",
            CancelReason::ReservationTimeout => "RESERVATION_TIMEOUT",
            CancelReason::Released => "RESERVATION_RELEASED",
        }
    }
}

/// A reservation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: ReservationId,
    pub coupon_id: CouponId,
    pub user_id: UserId,
    pub order_id: Option<ExternalRef>,
    pub order_amount: Money,
    /// Computed once, at reserve time, and honoured by the confirmation.
    pub discount: Money,
    pub status: ReservationStatus,
    pub reserved_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub payment_id: Option<ExternalRef>,
    pub confirmed_at: Option<DateTime<Utc>>,
    /// Confirmed after it had timed out (SPEC §4.4).
    pub late_confirmation: bool,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
}

impl Reservation {
    /// What the customer pays: the order amount less the discount.
    pub fn final_amount(&self) -> Money {
        Money::new(self.order_amount.amount() - self.discount.amount())
    }

    /// The hold a reserve puts on a coupon: a new `PENDING` reservation, until `expires_at`.
    pub fn hold(
        request: &ReserveRequest,
        discount: Money,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Changed {
        let reservation = Reservation {
            id: request.reservation_id.clone(),
            coupon_id: request.coupon,
            user_id: request.user,
            order_id: request.order_id.clone(),
            order_amount: request.order_amount,
            discount,
            status: ReservationStatus::Pending,
            reserved_at: now,
            expires_at,
            payment_id: None,
            confirmed_at: None,
            late_confirmation: false,
            cancelled_at: None,
            cancel_reason: None,
        };
        Changed { reservation, change: Change::Held }
    }

    /// The reservation confirmed by `request`: the coupon is used, by this order and payment
    /// (`late` when the reservation had timed out, SPEC §4.4).
    pub fn confirm(mut self, request: &ConfirmRequest, late: bool, now: DateTime<Utc>) -> Changed {
        self.status = ReservationStatus::Confirmed;
        self.confirmed_at = Some(now);
        self.payment_id.clone_from(&request.payment_id);
        self.order_id = Some(request.order_id.clone());
        self.late_confirmation = late;
        Changed { reservation: self, change: Change::Confirmed { at: now } }
    }

    /// The reservation ended without a sale: released, its payment failed, or its order cancelled.
    pub fn cancel(mut self, reason: CancelReason, now: DateTime<Utc>) -> Changed {
        self.status = ReservationStatus::Cancelled;
        self.cancelled_at = Some(now);
        self.cancel_reason = Some(reason.as_str().to_owned());
        Changed { reservation: self, change: Change::Cancelled { reason, at: now } }
    }

    /// The hold ran out before a payment came (the reservation-timeout job): the reservation
    /// expires, its coupon is free again, and `coupon.cancelled` says `RESERVATION_TIMEOUT`. A
    /// payment may still confirm it late while the coupon stays free (SPEC §4.4).
    pub fn time_out(mut self, now: DateTime<Utc>) -> Changed {
        let reason = CancelReason::ReservationTimeout;
        self.status = ReservationStatus::Expired;
        self.cancelled_at = Some(now);
        self.cancel_reason = Some(reason.as_str().to_owned());
        Changed { reservation: self, change: Change::Cancelled { reason, at: now } }
    }
}

/// A reservation after one of its transitions, and which one: `Changed::event` (in `event.rs`)
/// is the event that records it, which the store writes with the state in one transaction.
#[derive(Debug, Clone)]
pub struct Changed {
    pub reservation: Reservation,
    pub change: Change,
}

/// Which transition a [`Changed`] went through.
#[derive(Debug, Clone, Copy)]
pub enum Change {
    Held,
    Confirmed { at: DateTime<Utc> },
    Cancelled { reason: CancelReason, at: DateTime<Utc> },
}

/// What a checkout asks to hold.
#[derive(Debug, Clone)]
pub struct ReserveRequest {
    pub reservation_id: ReservationId,
    pub user: UserId,
    pub coupon: CouponId,
    pub order_amount: Money,
    pub order_id: Option<ExternalRef>,
}

/// A confirmation: `POST /api/coupons/use` or `payment.completed`.
#[derive(Debug, Clone)]
pub struct ConfirmRequest {
    pub reservation_id: ReservationId,
    pub order_id: ExternalRef,
    pub payment_id: Option<ExternalRef>,
    /// Set by the HTTP endpoint: the reservation must be this user's.
    pub user: Option<UserId>,
    /// Set by `payment.completed`: what the payment says about the reservation it settles.
    pub payment: Option<PaymentClaims>,
}

/// What a payment event (`payment.completed`, `payment.failed`) says about the reservation it
/// settles. The reservation id is the payment service's reference, but a payment whose user,
/// coupon or order differs from the reservation's was made for something else (a bug or a forged
/// record upstream): it changes nothing and goes to the DLQ as `PAYMENT_MISMATCH` (SPEC §10).
/// The amount is not compared: a payment's amount may include more than the coupon's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentClaims {
    pub user: Option<UserId>,
    pub coupon: Option<CouponId>,
    pub order: Option<ExternalRef>,
}

/// A field of a payment that differs from its reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The payment's field name (`userId`, `couponId`, `orderId`).
    pub field: &'static str,
    /// The reservation's value.
    pub expected: String,
    /// The payment's value.
    pub received: String,
}

/// The fields of a payment that differ from its reservation (at least one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the payment does not match its reservation: {}", describe(.0))]
pub struct PaymentMismatch(pub Vec<Mismatch>);

fn describe(mismatches: &[Mismatch]) -> String {
    let fields: Vec<String> = mismatches
        .iter()
        .map(|m| format!("{} expected {} received {}", m.field, m.expected, m.received))
        .collect();
    fields.join(", ")
}

impl PaymentClaims {
    /// The payment cross-check of SPEC §10: every field the payment carries must equal the
    /// reservation's (an order id only when the reservation recorded one).
    ///
    /// # Errors
    /// The fields that differ.
    pub fn check(&self, reservation: &Reservation) -> Result<(), PaymentMismatch> {
        let mut mismatches = Vec::new();
        let mut compare = |field, expected: Option<String>, received: Option<String>| {
            if let (Some(expected), Some(received)) = (expected, received)
                && expected != received
            {
                mismatches.push(Mismatch { field, expected, received });
            }
        };
        compare("userId", Some(reservation.user_id.to_string()), self.user.map(|u| u.to_string()));
        compare("couponId", Some(reservation.coupon_id.to_string()), self.coupon.map(|c| c.to_string()));
        compare(
            "orderId",
            reservation.order_id.as_ref().map(|o| o.as_str().to_owned()),
            self.order.as_ref().map(|o| o.as_str().to_owned()),
        );
        if mismatches.is_empty() { Ok(()) } else { Err(PaymentMismatch(mismatches)) }
    }
}
