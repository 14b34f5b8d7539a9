//! Identifier newtypes. Each id is its own type so that a coupon id can never be passed where a
//! policy id is expected; they are stamped out by one macro so they all behave the same.

use std::fmt;

/// Defines a `Copy` newtype over a positive `i64` database identifier.
macro_rules! int_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(i64);

        impl $name {
            /// Wraps a raw value; `None` unless it is positive (ids start at 1 everywhere).
            pub fn new(raw: i64) -> Option<Self> {
                (raw > 0).then_some(Self(raw))
            }

            /// The raw value, for storage and wire formats.
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

int_id!(
    /// A coupon policy (campaign rule), `coupon_policies.id`.
    PolicyId
);
int_id!(
    /// An issued coupon, `coupon_issues.id`.
    CouponId
);
int_id!(
    /// A platform user, as identified by the gateway's `X-User-Id` header.
    UserId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_positive() {
        assert_eq!(UserId::new(0), None);
        assert_eq!(UserId::new(-5), None);
        assert_eq!(UserId::new(42).map(UserId::get), Some(42));
        assert_eq!(CouponId::new(7).map(|id| id.to_string()).as_deref(), Some("7"));
    }
}
