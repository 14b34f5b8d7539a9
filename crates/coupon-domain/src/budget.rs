//! Spend budgets (SPEC §11.5): the most a policy's coupons may give away.
//!
//! A policy's budget counts the discounts of its live reservations (held or used). A hold that
//! would take it past its amount is refused; a hold that ends gives its discount back. The store
//! keeps the running sum in the statements that start and end holds, under a CHECK that the sum
//! never passes the amount, so two checkouts racing for the last of a budget cannot both win.

use rust_decimal::Decimal;

use crate::money::Money;

/// `BUDGET_EXHAUSTED`: the discount does not fit what is left of the policy's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the campaign's budget has {remaining} left, less than this discount of {discount}")]
pub struct BudgetExhausted {
    pub remaining: Money,
    pub discount: Money,
}

/// A policy's budget and what its live reservations take of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub amount: Money,
    pub used: Money,
}

impl Budget {
    pub fn remaining(&self) -> Money {
        Money::new((self.amount.amount() - self.used.amount()).max(Decimal::ZERO))
    }

    /// Takes `discount` from the budget.
    ///
    /// # Errors
    /// When less than `discount` is left; nothing is taken.
    pub fn admit(&mut self, discount: Money) -> Result<(), BudgetExhausted> {
        let remaining = self.remaining();
        if discount.amount() > remaining.amount() {
            return Err(BudgetExhausted { remaining, discount });
        }
        self.used = Money::new(self.used.amount() + discount.amount());
        Ok(())
    }

    /// Usage in percent of the amount.
    pub fn percent_used(&self) -> Decimal {
        if self.amount.amount() <= Decimal::ZERO {
            return Decimal::ONE_HUNDRED;
        }
        self.used.amount() * Decimal::ONE_HUNDRED / self.amount.amount()
    }

    /// The thresholds (percent, ascending) that usage has reached and that were not announced
    /// yet: those above `announced`, the highest announced before.
    pub fn crossed(&self, thresholds: &[u8], announced: u8) -> Vec<u8> {
        let used = self.percent_used();
        thresholds.iter().copied().filter(|t| *t > announced && used >= Decimal::from(*t)).collect()
    }
}

/// Budget thresholds in percent (`COUPON_BUDGET_THRESHOLDS`), ascending, each 1 to 100.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thresholds(Vec<u8>);

/// Why a list is not a set of thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("budget thresholds are percentages from 1 to 100")]
pub struct InvalidThresholds;

impl Thresholds {
    /// The thresholds in `values`, in any order.
    ///
    /// # Errors
    /// A value outside 1..=100.
    pub fn new(values: &[u8]) -> Result<Self, InvalidThresholds> {
        if values.iter().any(|t| !(1..=100).contains(t)) {
            return Err(InvalidThresholds);
        }
        let mut values = values.to_vec();
        values.sort_unstable();
        values.dedup();
        Ok(Self(values))
    }

    pub fn values(&self) -> &[u8] {
        &self.0
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Self(vec![80, 100])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(amount: i64, used: i64) -> Budget {
        Budget { amount: Money::from(amount), used: Money::from(used) }
    }

    #[test]
    fn a_hold_fits_what_is_left_or_takes_nothing() {
        let mut b = budget(10_000, 7_000);
        assert!(b.admit(Money::from(3_000)).is_ok());
        assert_eq!(b.remaining(), Money::from(0));
        let refused = b.admit(Money::from(1));
        assert_eq!(refused, Err(BudgetExhausted { remaining: Money::from(0), discount: Money::from(1) }));
        assert_eq!(b.used, Money::from(10_000));
        assert!(budget(10_000, 10_000).admit(Money::from(0)).is_ok());
    }

    #[test]
    fn each_threshold_is_crossed_once() {
        let thresholds = Thresholds::new(&[100, 80]).expect("thresholds");
        assert_eq!(thresholds.values(), &[80, 100]);
        assert_eq!(budget(1_000, 799).crossed(thresholds.values(), 0), Vec::<u8>::new());
        assert_eq!(budget(1_000, 800).crossed(thresholds.values(), 0), vec![80]);
        assert_eq!(budget(1_000, 1_000).crossed(thresholds.values(), 0), vec![80, 100]);
        assert_eq!(budget(1_000, 1_000).crossed(thresholds.values(), 80), vec![100]);
        assert_eq!(budget(1_000, 1_000).crossed(thresholds.values(), 100), Vec::<u8>::new());
        assert!(Thresholds::new(&[0]).is_err());
        assert!(Thresholds::new(&[101]).is_err());
    }
}
