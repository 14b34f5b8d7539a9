//! Stacking (SPEC §11.4): which coupons may share one order.
//!
//! The live reservations of an order hold either one non-stackable coupon or up to the
//! configured number of stackable ones. Each live reservation made for an order occupies
//! [`OrderSlots`]: the k-th stackable coupon the slot k, a non-stackable coupon every slot. The
//! rule below hands out slots; the store keeps two live reservations of one order from sharing a
//! slot (an exclusion constraint in PostgreSQL), so two checkouts racing for one order cannot
//! both win, whatever each read.

/// The slots of its order a live reservation occupies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderSlots {
    /// A non-stackable coupon: the whole order.
    Exclusive,
    /// The k-th stackable coupon (1-based).
    Shared(u16),
}

/// `COUPON_NOT_STACKABLE`: the order already holds what this coupon cannot share it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotStackable(&'static str);

impl OrderSlots {
    /// Slots of a coupon joining an order whose live reservations occupy `taken`, when at most
    /// `max` stackable coupons may share an order.
    ///
    /// # Errors
    /// The order holds a non-stackable coupon, or this one is non-stackable and the order holds
    /// any coupon, or the order holds `max` stackable coupons already.
    pub fn take(taken: &[OrderSlots], stackable: bool, max: u16) -> Result<OrderSlots, NotStackable> {
        if taken.contains(&OrderSlots::Exclusive) {
            return Err(NotStackable("the order already holds a coupon that cannot be combined"));
        }
        if !stackable {
            return if taken.is_empty() {
                Ok(OrderSlots::Exclusive)
            } else {
                Err(NotStackable("this coupon cannot be combined with the order's other coupons"))
            };
        }
        (1..=max)
            .find(|k| !taken.contains(&OrderSlots::Shared(*k)))
            .map(OrderSlots::Shared)
            .ok_or(NotStackable("the order holds the most coupons one order may combine"))
    }

    /// Whether two reservations of one order occupying these slots could both be live.
    pub fn overlaps(self, other: OrderSlots) -> bool {
        match (self, other) {
            (OrderSlots::Shared(a), OrderSlots::Shared(b)) => a == b,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_exclusive_coupon_or_up_to_max_stackable_ones() {
        use OrderSlots::{Exclusive, Shared};
        assert_eq!(OrderSlots::take(&[], false, 5), Ok(Exclusive));
        assert_eq!(OrderSlots::take(&[], true, 5), Ok(Shared(1)));
        assert!(OrderSlots::take(&[Exclusive], true, 5).is_err());
        assert!(OrderSlots::take(&[Exclusive], false, 5).is_err());
        assert!(OrderSlots::take(&[Shared(1)], false, 5).is_err());
        assert_eq!(OrderSlots::take(&[Shared(1), Shared(3)], true, 5), Ok(Shared(2)));
        assert!(OrderSlots::take(&[Shared(1), Shared(2)], true, 2).is_err());
        assert!(Exclusive.overlaps(Shared(4)));
        assert!(!Shared(1).overlaps(Shared(2)));
    }
}
