//! Stacking (SPEC §11.4): which coupons may share one order.
//!
//! The live reservations of an order hold either one non-stackable coupon or up to the
//! configured number of stackable ones: its [`OrderStack`]. The rule below decides from the stack
//! as read; the store moves the stack's counters in the statements that start and end
//! reservations, under a database constraint that refuses a second non-stackable coupon, a mix,
//! or more stackable ones than the cap, so two checkouts racing for one order cannot both win,
//! whatever each read.

/// What a live reservation holds of its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Share {
    /// A non-stackable coupon: the whole order.
    Exclusive,
    /// One of the order's places for stackable coupons.
    Stackable,
}

/// What the live reservations of one order hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderStack {
    /// A non-stackable coupon holds the order.
    pub exclusive: bool,
    /// Stackable coupons held.
    pub stackable: u16,
}

/// `COUPON_NOT_STACKABLE`: the order already holds what this coupon cannot share it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotStackable(&'static str);

impl OrderStack {
    /// The share a coupon joining this order takes, when at most `max` stackable coupons may
    /// share an order.
    ///
    /// # Errors
    /// The order holds a non-stackable coupon, or this one is non-stackable and the order holds
    /// any coupon, or the order holds `max` stackable coupons already.
    pub fn take(self, stackable: bool, max: u16) -> Result<Share, NotStackable> {
        if self.exclusive {
            return Err(NotStackable("the order already holds a coupon that cannot be combined"));
        }
        if !stackable {
            return if self.stackable == 0 {
                Ok(Share::Exclusive)
            } else {
                Err(NotStackable("this coupon cannot be combined with the order's other coupons"))
            };
        }
        if self.stackable >= max {
            return Err(NotStackable("the order holds the most coupons one order may combine"));
        }
        Ok(Share::Stackable)
    }

    /// Stackable coupons that may still join the order.
    pub fn room(self, max: u16) -> usize {
        if self.exclusive { 0 } else { usize::from(max.saturating_sub(self.stackable)) }
    }
}

/// What a timed-out reservation needs to rejoin its order when its payment arrives late: the
/// share it held, the order's stack now, and the cap the order's holds were made under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejoin {
    pub share: Share,
    pub stack: OrderStack,
    pub cap: u16,
}

impl Rejoin {
    /// Whether the order has room for the share again.
    pub fn fits(self) -> bool {
        self.stack.take(self.share == Share::Stackable, self.cap).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_exclusive_coupon_or_up_to_max_stackable_ones() {
        let empty = OrderStack::default();
        let exclusive = OrderStack { exclusive: true, stackable: 0 };
        let two = OrderStack { exclusive: false, stackable: 2 };
        assert_eq!(empty.take(false, 5), Ok(Share::Exclusive));
        assert_eq!(empty.take(true, 5), Ok(Share::Stackable));
        assert!(exclusive.take(true, 5).is_err());
        assert!(exclusive.take(false, 5).is_err());
        assert!(two.take(false, 5).is_err());
        assert_eq!(two.take(true, 3), Ok(Share::Stackable));
        assert!(two.take(true, 2).is_err());
        assert_eq!((empty.room(5), exclusive.room(5), two.room(5), two.room(1)), (5, 0, 3, 0));
    }

    #[test]
    fn a_late_share_rejoins_only_an_order_with_room_for_it() {
        let rejoin = |share, stack, cap| Rejoin { share, stack, cap }.fits();
        let one = OrderStack { exclusive: false, stackable: 1 };
        assert!(rejoin(Share::Exclusive, OrderStack::default(), 5));
        assert!(!rejoin(Share::Exclusive, one, 5));
        assert!(rejoin(Share::Stackable, one, 2));
        assert!(!rejoin(Share::Stackable, one, 1));
        assert!(!rejoin(Share::Stackable, OrderStack { exclusive: true, stackable: 0 }, 5));
    }
}
