//! Money. Amounts are exact decimals (`rust_decimal`), never floats: a coupon discount is
//! money-like state and must round the same way on every replica.

use std::fmt;

use rust_decimal::Decimal;

/// An amount of money in the platform's single currency, in currency units (e.g. 10000 = ₩10,000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

/// An amount that the service does not hold: more than two decimal places, or beyond
/// ±[`Money::MAX`] (what `NUMERIC(15,2)` stores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must have at most 2 decimal places and lie within ±9999999999999.99")]
pub struct UnsupportedAmount;

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);
    /// The largest amount: 13 integer digits and 2 decimal places, as every money column stores
    /// (999,999,999,999,999 hundredths in the 32-bit words of the const constructor).
    pub const MAX: Money = Money(Decimal::from_parts(2_764_472_319, 232_830, 0, false, 2));

    /// An amount from outside (a request, a record), refused when no money column could store it
    /// exactly: rounding it silently would change what the client asked for.
    ///
    /// # Errors
    /// More than two decimal places (after trailing zeros are dropped), or beyond ±`MAX`.
    pub fn parse(amount: Decimal) -> Result<Self, UnsupportedAmount> {
        if amount.normalize().scale() > 2 || amount.abs() > Self::MAX.0 {
            return Err(UnsupportedAmount);
        }
        Ok(Self(amount))
    }

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
    fn amounts_beyond_numeric_15_2_are_refused() {
        assert_eq!(Money::MAX.amount().to_string(), "9999999999999.99");
        assert!(Money::parse(Decimal::new(999_999_999_999_999, 2)).is_ok());
        assert!(Money::parse(Decimal::new(-999_999_999_999_999, 2)).is_ok());
        assert!(Money::parse(Decimal::new(12_300, 3)).is_ok(), "12.300 is 12.3");
        assert_eq!(Money::parse(Decimal::new(1, 3)), Err(UnsupportedAmount), "0.001");
        assert_eq!(Money::parse(Decimal::new(10_000_000_000_000, 0)), Err(UnsupportedAmount), "1e13");
        assert_eq!(Money::parse(Decimal::from_i128_with_scale(10_i128.pow(20), 0)), Err(UnsupportedAmount));
    }

    #[test]
    fn displays_without_trailing_zeros() {
        let m = Money::new(Decimal::new(500000, 2));
        assert_eq!(m.to_string(), "5000");
        assert!(m.is_positive());
        assert!(!Money::ZERO.is_positive());
    }
}
