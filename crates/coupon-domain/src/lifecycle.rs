//! The life of an issued coupon (SPEC §4.3), as one pure function: which transitions are allowed,
//! and which error a forbidden one is. The stores apply a transition with a conditional update on
//! the status they read, so two racing transitions cannot both win; this module decides what the
//! winner may do and what the losers are told.
//!
//! ```text
//! ISSUED   → RESERVED   reserve / apply
//! RESERVED → USED       payment.completed, or POST /api/coupons/use
//! RESERVED → ISSUED     payment.failed, release, order.cancelled before payment, timeout
//! ISSUED   → EXPIRED    expiry job (RESERVED coupons expire only after their reservation resolves)
//! ISSUED   → CANCELLED  admin revoke
//! USED     → ISSUED     order.cancelled after payment, if not yet expired; else → EXPIRED
//! ```

use crate::coupon::CouponStatus;

/// Something that happens to a coupon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// A checkout holds the coupon (reserve or apply).
    Reserve,
    /// The payment went through.
    Confirm,
    /// The hold ends without a payment (failure, release, cancellation before payment, timeout).
    Release,
    /// The expiry job found the coupon past its date.
    Expire,
    /// An admin takes the coupon back.
    Revoke,
    /// The order was cancelled after payment: the coupon comes back (or expires if its date passed).
    Restore,
}

impl Transition {
    pub const ALL: [Transition; 6] = [
        Transition::Reserve,
        Transition::Confirm,
        Transition::Release,
        Transition::Expire,
        Transition::Revoke,
        Transition::Restore,
    ];
}

/// A transition the coupon's state does not allow, with the code the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    /// `COUPON_NOT_AVAILABLE` (409): held, revoked, or in a state this transition does not apply to.
    #[error("the coupon is not available for this")]
    NotAvailable,
    /// `COUPON_ALREADY_USED` (409).
    #[error("the coupon was already used")]
    AlreadyUsed,
    /// `COUPON_EXPIRED` (410).
    #[error("the coupon has expired")]
    Expired,
}

/// The status after `transition`, given whether the coupon's date has passed.
///
/// # Errors
/// The transition is not allowed from `status`.
pub fn next(
    status: CouponStatus,
    transition: Transition,
    date_passed: bool,
) -> Result<CouponStatus, Forbidden> {
    use CouponStatus::{Cancelled, Expired, Issued, Reserved, Used};
    use Transition::{Confirm, Expire, Release, Reserve, Restore, Revoke};
    match (status, transition) {
        (Issued, Reserve) if date_passed => Err(Forbidden::Expired),
        (Issued, Reserve) => Ok(Reserved),
        // A confirmation honours the hold it confirms, even if the date passed meanwhile: the
        // discount was granted at reserve time.
        (Reserved, Confirm) => Ok(Used),
        (Reserved, Release) => Ok(Issued),
        (Issued, Expire) if date_passed => Ok(Expired),
        // A coupon past its date reads as EXPIRED (SPEC §4.2), and is refused as one.
        (Issued, Revoke) if date_passed => Err(Forbidden::Expired),
        (Issued, Revoke) => Ok(Cancelled),
        (Used, Restore) if date_passed => Ok(Expired),
        (Used, Restore) => Ok(Issued),
        (Used, _) => Err(Forbidden::AlreadyUsed),
        (Expired, _) => Err(Forbidden::Expired),
        (Issued, Confirm | Release | Expire | Restore)
        | (Reserved, Reserve | Expire | Revoke | Restore)
        | (Cancelled, _) => Err(Forbidden::NotAvailable),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const STATUSES: [CouponStatus; 5] = [
        CouponStatus::Issued,
        CouponStatus::Reserved,
        CouponStatus::Used,
        CouponStatus::Expired,
        CouponStatus::Cancelled,
    ];

    fn any_status() -> impl Strategy<Value = CouponStatus> {
        proptest::sample::select(STATUSES.to_vec())
    }

    fn any_transition() -> impl Strategy<Value = Transition> {
        proptest::sample::select(Transition::ALL.to_vec())
    }

    #[test]
    fn the_spec_transitions() {
        use CouponStatus::*;
        use Transition::*;
        let allowed = [
            (Issued, Reserve, false, Reserved),
            (Reserved, Confirm, false, Used),
            (Reserved, Confirm, true, Used),
            (Reserved, Release, false, Issued),
            (Reserved, Release, true, Issued),
            (Issued, Expire, true, Expired),
            (Issued, Revoke, false, Cancelled),
            (Used, Restore, false, Issued),
            (Used, Restore, true, Expired),
        ];
        for (from, t, date_passed, to) in allowed {
            assert_eq!(next(from, t, date_passed), Ok(to), "{from:?} --{t:?}-->");
        }
        assert_eq!(
            next(Issued, Reserve, true),
            Err(Forbidden::Expired),
            "expired by date before the job ran"
        );
        assert_eq!(next(Issued, Revoke, true), Err(Forbidden::Expired), "revoking what reads as expired");
        assert_eq!(
            next(Reserved, Reserve, false),
            Err(Forbidden::NotAvailable),
            "held by another reservation"
        );
        assert_eq!(next(Used, Confirm, false), Err(Forbidden::AlreadyUsed));
        assert_eq!(
            next(Reserved, Expire, true),
            Err(Forbidden::NotAvailable),
            "expires only after the hold resolves"
        );
        assert_eq!(next(Issued, Expire, false), Err(Forbidden::NotAvailable), "not before its date");
    }

    proptest! {
        #[test]
        fn terminal_states_stay_terminal(t in any_transition(), date_passed in any::<bool>()) {
            prop_assert!(next(CouponStatus::Cancelled, t, date_passed).is_err());
            prop_assert_eq!(next(CouponStatus::Expired, t, date_passed), Err(Forbidden::Expired));
        }

        #[test]
        fn only_a_reserve_of_an_issued_coupon_holds_it(s in any_status(), t in any_transition(), date_passed in any::<bool>()) {
            if next(s, t, date_passed) == Ok(CouponStatus::Reserved) {
                prop_assert_eq!((s, t), (CouponStatus::Issued, Transition::Reserve));
            }
        }

        #[test]
        fn only_a_confirmation_of_a_hold_uses_the_coupon(s in any_status(), t in any_transition(), date_passed in any::<bool>()) {
            if next(s, t, date_passed) == Ok(CouponStatus::Used) {
                prop_assert_eq!((s, t), (CouponStatus::Reserved, Transition::Confirm));
            }
        }

        #[test]
        fn a_used_coupon_leaves_only_by_restore(t in any_transition(), date_passed in any::<bool>()) {
            let outcome = next(CouponStatus::Used, t, date_passed);
            prop_assert_eq!(outcome.is_ok(), t == Transition::Restore);
        }
    }
}
