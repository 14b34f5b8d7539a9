//! The discount a coupon grants on an order (SPEC §4.5). Pure arithmetic on exact decimals, in one
//! place, so that the quote at reserve time and every later read agree to the unit.

use rust_decimal::Decimal;

use crate::money::Money;

/// How a policy discounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscountType {
    FixedAmount,
    Percentage,
}

impl DiscountType {
    pub fn as_str(self) -> &'static str {
        match self {
            DiscountType::FixedAmount => "FIXED_AMOUNT",
            DiscountType::Percentage => "PERCENTAGE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "FIXED_AMOUNT" => Some(DiscountType::FixedAmount),
            "PERCENTAGE" => Some(DiscountType::Percentage),
            _ => None,
        }
    }
}

/// A policy's discount terms, valid by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscountRule {
    discount_type: DiscountType,
    value: Decimal,
    minimum_order_amount: Money,
    max_discount_amount: Option<Money>,
}

/// The terms are not a valid discount (`INVALID_DISCOUNT_VALUE`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidDiscountValue(pub &'static str);

/// The order does not qualify for the discount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DiscountError {
    /// `INVALID_ORDER_AMOUNT`
    #[error("the order amount must be positive")]
    InvalidOrderAmount,
    /// `MINIMUM_ORDER_NOT_MET`
    #[error("the order amount is below the minimum of {minimum}")]
    MinimumOrderNotMet { minimum: Money },
}

impl DiscountRule {
    /// FIXED_AMOUNT needs a value above 0; PERCENTAGE a value in (0, 100]. A minimum order cannot
    /// be negative and a cap must be positive.
    ///
    /// # Errors
    /// [`InvalidDiscountValue`] naming the broken rule.
    pub fn new(
        discount_type: DiscountType,
        value: Decimal,
        minimum_order_amount: Option<Money>,
        max_discount_amount: Option<Money>,
    ) -> Result<Self, InvalidDiscountValue> {
        if value <= Decimal::ZERO {
            return Err(InvalidDiscountValue("discountValue must be greater than 0"));
        }
        if discount_type == DiscountType::Percentage && value > Decimal::ONE_HUNDRED {
            return Err(InvalidDiscountValue("a percentage discount must be at most 100"));
        }
        let minimum_order_amount = minimum_order_amount.unwrap_or(Money::ZERO);
        if minimum_order_amount < Money::ZERO {
            return Err(InvalidDiscountValue("minimumOrderAmount cannot be negative"));
        }
        if max_discount_amount.is_some_and(|cap| !cap.is_positive()) {
            return Err(InvalidDiscountValue("maxDiscountAmount must be greater than 0"));
        }
        Ok(Self { discount_type, value, minimum_order_amount, max_discount_amount })
    }

    pub fn discount_type(&self) -> DiscountType {
        self.discount_type
    }

    /// The amount (FIXED_AMOUNT) or percent (PERCENTAGE).
    pub fn value(&self) -> Decimal {
        self.value
    }

    pub fn minimum_order_amount(&self) -> Money {
        self.minimum_order_amount
    }

    pub fn max_discount_amount(&self) -> Option<Money> {
        self.max_discount_amount
    }

    /// The discount on an order of `order_amount`:
    /// 1. the order must be positive and at least the minimum;
    /// 2. FIXED_AMOUNT gives the value, PERCENTAGE `order × value / 100` rounded down
    ///    ([`round_down_to_unit`]);
    /// 3. capped by `max_discount_amount`, then by the order amount; never negative.
    ///
    /// # Errors
    /// When the order does not qualify.
    pub fn discount_for(&self, order_amount: Money) -> Result<Money, DiscountError> {
        if !order_amount.is_positive() {
            return Err(DiscountError::InvalidOrderAmount);
        }
        if order_amount < self.minimum_order_amount {
            return Err(DiscountError::MinimumOrderNotMet { minimum: self.minimum_order_amount });
        }
        let raw = match self.discount_type {
            DiscountType::FixedAmount => Money::new(self.value),
            DiscountType::Percentage => {
                round_down_to_unit(order_amount.amount() * self.value / Decimal::ONE_HUNDRED)
            }
        };
        let capped = self.max_discount_amount.map_or(raw, |cap| raw.min(cap));
        Ok(capped.min(order_amount).max(Money::ZERO))
    }
}

/// The rounding of percentage discounts: **down to whole currency units** (toward zero; amounts
/// here are never negative). The customer never gets a fraction of a unit more than the
/// percentage allows, and the result is the same on every replica.
pub fn round_down_to_unit(amount: Decimal) -> Money {
    Money::new(amount.floor())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rule(t: DiscountType, value: i64, min: Option<i64>, cap: Option<i64>) -> DiscountRule {
        DiscountRule::new(t, Decimal::from(value), min.map(Money::from), cap.map(Money::from))
            .expect("valid rule")
    }

    #[test]
    fn spec_vectors() {
        use DiscountType::*;
        let pct = |v: Decimal, cap: Option<i64>| {
            DiscountRule::new(Percentage, v, None, cap.map(Money::from)).expect("valid")
        };
        let cases = [
            (rule(Percentage, 10, None, None), 50_000, 5_000),
            (rule(Percentage, 20, None, Some(10_000)), 100_000, 10_000),
            (rule(FixedAmount, 10_000, None, None), 5_000, 5_000),
            (pct(Decimal::new(125, 1), None), 40_000, 5_000),
            (rule(Percentage, 10, None, None), 12_345, 1_234),
        ];
        for (rule, order, expected) in cases {
            assert_eq!(
                rule.discount_for(Money::from(order)),
                Ok(Money::from(expected)),
                "{rule:?} on {order}"
            );
        }
    }

    #[test]
    fn order_must_be_positive_and_meet_the_minimum() {
        let r = rule(DiscountType::FixedAmount, 1_000, Some(10_000), None);
        assert_eq!(r.discount_for(Money::ZERO), Err(DiscountError::InvalidOrderAmount));
        assert_eq!(r.discount_for(Money::from(-5)), Err(DiscountError::InvalidOrderAmount));
        assert_eq!(
            r.discount_for(Money::from(9_999)),
            Err(DiscountError::MinimumOrderNotMet { minimum: Money::from(10_000) })
        );
        assert_eq!(
            r.discount_for(Money::from(10_000)),
            Ok(Money::from(1_000)),
            "exactly the minimum qualifies"
        );
    }

    #[test]
    fn invalid_terms_are_rejected() {
        use DiscountType::*;
        assert!(DiscountRule::new(FixedAmount, Decimal::ZERO, None, None).is_err());
        assert!(DiscountRule::new(Percentage, Decimal::from(101), None, None).is_err());
        assert!(DiscountRule::new(Percentage, Decimal::from(-1), None, None).is_err());
        assert!(DiscountRule::new(Percentage, Decimal::from(100), None, None).is_ok());
        assert!(DiscountRule::new(Percentage, Decimal::from(10), Some(Money::from(-1)), None).is_err());
        assert!(DiscountRule::new(Percentage, Decimal::from(10), None, Some(Money::ZERO)).is_err());
    }

    fn any_rule() -> impl Strategy<Value = DiscountRule> {
        (
            prop_oneof![Just(DiscountType::FixedAmount), Just(DiscountType::Percentage)],
            1i64..=100_000,
            proptest::option::of(0i64..=50_000),
            proptest::option::of(1i64..=50_000),
        )
            .prop_map(|(t, v, min, cap)| {
                let value = if t == DiscountType::Percentage {
                    Decimal::new(v % 10_000 + 1, 2)
                } else {
                    Decimal::from(v)
                };
                DiscountRule::new(t, value, min.map(Money::from), cap.map(Money::from))
                    .expect("generated rule is valid")
            })
    }

    proptest! {
        #[test]
        fn discount_is_between_zero_and_the_order(rule in any_rule(), order in 1i64..=10_000_000) {
            if let Ok(d) = rule.discount_for(Money::from(order)) {
                prop_assert!(d >= Money::ZERO);
                prop_assert!(d <= Money::from(order));
            }
        }

        #[test]
        fn the_cap_is_respected(rule in any_rule(), order in 1i64..=10_000_000) {
            if let (Ok(d), Some(cap)) = (rule.discount_for(Money::from(order)), rule.max_discount_amount()) {
                prop_assert!(d <= cap);
            }
        }

        #[test]
        fn percentage_discounts_are_whole_units(rule in any_rule(), order in 1i64..=10_000_000) {
            if let (DiscountType::Percentage, Ok(d)) = (rule.discount_type(), rule.discount_for(Money::from(order))) {
                prop_assert_eq!(d.amount().fract(), Decimal::ZERO);
            }
        }

        #[test]
        fn a_larger_order_never_gets_a_smaller_discount(rule in any_rule(), order in 1i64..=5_000_000, more in 0i64..=5_000_000) {
            if let Ok(small) = rule.discount_for(Money::from(order)) {
                let large = rule.discount_for(Money::from(order + more));
                prop_assert!(large.is_ok_and(|large| large >= small));
            }
        }
    }
}
