//! Money. Amounts are exact decimals (`rust_decimal`), never floats: a coupon discount is
//! money-like state and must round the same way on every replica.

use std::fmt;

use rust_decimal::Decimal;

/// An amount of money in the platform's single currency, in currency units (e.g. 10000 = ₩10,000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    pub fn new(amount: Decimal) -> Self {
        Self(amount)
    }

    pub fn amount(self) -> Decimal {
        self.0
    }

    pub fn is_positive(self) -> bool {
        self.0 > Decimal::ZERO
    }
}

impl From<i64> for Money {
    fn from(units: i64) -> Self {
        Self(Decimal::from(units))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.normalize().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_without_trailing_zeros() {
        let m = Money::new(Decimal::new(500000, 2));
        assert_eq!(m.to_string(), "5000");
        assert!(m.is_positive());
        assert!(!Money::ZERO.is_positive());
    }
}
