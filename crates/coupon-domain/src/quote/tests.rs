use std::collections::HashMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::*;
use crate::discount::{DiscountRule, DiscountType};
use crate::fakes::policy;
use crate::policy::DistributionType;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).single().unwrap_or_else(|| panic!("instant"))
}

fn coupon_id(n: i64) -> CouponId {
    CouponId::new(n).unwrap_or_else(|| panic!("coupon {n}"))
}

fn policy_id(n: i64) -> PolicyId {
    PolicyId::new(n).unwrap_or_else(|| panic!("policy {n}"))
}

/// A policy `p` giving `fixed` off orders of at least `minimum`, with AVAILABLE coupons `ids`.
fn offer(ids: &[i64], p: i64, fixed: i64, minimum: i64, stackable: bool) -> PolicyCoupons {
    let mut policy = policy(p, DistributionType::Download, None, t0());
    policy.discount =
        DiscountRule::new(DiscountType::FixedAmount, Decimal::from(fixed), Some(Money::from(minimum)), None)
            .unwrap_or_else(|e| panic!("{e}"));
    policy.stackable = stackable;
    let coupons = ids.iter().map(|id| coupon_id(*id)).collect();
    PolicyCoupons { policy, budget: None, coupons, earliest_expiry: t0() + Duration::days(1) }
}

fn order() -> ExternalRef {
    ExternalRef::parse("ORDER-1", ExternalRef::ORDER_MAX).unwrap_or_else(|e| panic!("{e}"))
}

/// The outcome the quote gives coupon `id`.
fn outcome(quote: &Quote, id: i64) -> Result<Money, HoldRefused> {
    let line = quote.lines.iter().find(|l| l.coupon == coupon_id(id)).unwrap_or_else(|| panic!("{id}"));
    quote.verdict(*line).outcome
}

#[test]
fn each_coupon_is_judged_by_the_reserve_rule_and_the_best_combination_wins() {
    let mut budgeted = offer(&[5], 4, 3_000, 0, true);
    budgeted.budget = Some(Budget { amount: Money::from(10_000), used: Money::from(8_000) });
    let view = QuoteView {
        wallet: vec![
            offer(&[1], 1, 5_000, 0, false),
            offer(&[2, 3], 2, 2_000, 0, true),
            offer(&[4], 3, 9_000, 100_000, false),
            budgeted,
        ],
        order: OrderStack::default(),
    };
    let rules = CheckoutRules::default();
    let quote = quote(view, Money::from(50_000), Some(&order()), t0(), &rules);
    let ids: Vec<i64> = quote.lines.iter().map(|l| l.coupon.get()).collect();
    assert_eq!(ids, vec![5, 4, 3, 2, 1], "newest first");
    assert_eq!(outcome(&quote, 1), Ok(Money::from(5_000)));
    assert_eq!(outcome(&quote, 3), Ok(Money::from(2_000)));
    assert!(matches!(
        outcome(&quote, 4),
        Err(HoldRefused::Discount(DiscountError::MinimumOrderNotMet { .. }))
    ));
    assert!(
        matches!(outcome(&quote, 5), Err(HoldRefused::BudgetExhausted(_))),
        "3,000 does not fit the 2,000 left"
    );
    // Two stackable coupons (4,000) lose to the one non-stackable 5,000.
    assert_eq!(quote.best, Best { coupons: vec![coupon_id(1)], discount: Money::from(5_000) });
    assert_eq!(quote.final_amount(quote.best.discount), Money::from(45_000));
}

#[test]
fn the_coupons_of_one_policy_share_one_verdict_judged_at_their_earliest_date() {
    let wallet = vec![offer(&[1, 3], 1, 5_000, 0, false), offer(&[2], 2, 2_000, 0, true)];
    let rules = CheckoutRules::default();
    let judged = quote(
        QuoteView { wallet: wallet.clone(), order: OrderStack::default() },
        Money::from(50_000),
        None,
        t0(),
        &rules,
    );
    assert_eq!(judged.verdicts.len(), 2, "one verdict per policy");
    assert_eq!(outcome(&judged, 1), Ok(Money::from(5_000)));
    assert_eq!(outcome(&judged, 3), Ok(Money::from(5_000)));
    assert_eq!(outcome(&judged, 2), Ok(Money::from(2_000)));

    // Judged one second after the earliest date of policy 1, its coupons are refused as a
    // reserve of that coupon would be.
    let mut late = wallet;
    late[0].earliest_expiry = t0() - Duration::seconds(1);
    let quote = quote(
        QuoteView { wallet: late, order: OrderStack::default() },
        Money::from(50_000),
        None,
        t0(),
        &rules,
    );
    assert_eq!(outcome(&quote, 1), Err(HoldRefused::Forbidden(crate::lifecycle::Forbidden::Expired)));
    assert_eq!(outcome(&quote, 2), Ok(Money::from(2_000)));
    assert_eq!(quote.best, Best { coupons: vec![coupon_id(2)], discount: Money::from(2_000) });
}

#[test]
fn a_policy_without_coupons_gets_no_verdict() {
    let quote = quote(
        QuoteView { wallet: vec![offer(&[], 1, 5_000, 0, false)], order: OrderStack::default() },
        Money::from(50_000),
        None,
        t0(),
        &CheckoutRules::default(),
    );
    assert!(quote.verdicts.is_empty() && quote.lines.is_empty());
    assert_eq!(quote.best, Best { coupons: Vec::new(), discount: Money::from(0) });
}

#[test]
fn an_order_holding_a_stackable_coupon_leaves_only_stackable_ones_applicable() {
    let view = QuoteView {
        wallet: vec![
            offer(&[1], 1, 5_000, 0, false),
            offer(&[2], 2, 2_000, 0, true),
            offer(&[3], 3, 1_000, 0, true),
        ],
        order: OrderStack { exclusive: false, stackable: 1 },
    };
    let rules = CheckoutRules { max_per_order: 2, ..CheckoutRules::default() };
    let quote = quote(view, Money::from(50_000), Some(&order()), t0(), &rules);
    assert!(matches!(outcome(&quote, 1), Err(HoldRefused::NotStackable(_))));
    assert_eq!(
        quote.best,
        Best { coupons: vec![coupon_id(2)], discount: Money::from(2_000) },
        "one slot left"
    );
}

#[test]
fn a_sum_is_capped_at_the_order_amount_with_as_few_coupons_as_reach_it() {
    let candidates: Vec<Candidate> = (1..=4)
        .map(|n| Candidate {
            coupon: coupon_id(n),
            policy: policy_id(n),
            stackable: true,
            discount: Money::from(4_000),
        })
        .collect();
    let best = best(&candidates, &HashMap::new(), Money::from(10_000), 5);
    assert_eq!(best.discount, Money::from(10_000));
    assert_eq!(best.coupons, vec![coupon_id(1), coupon_id(2), coupon_id(3)]);
}

/// Every allowed combination, the best by the same ranking.
fn brute_force(
    candidates: &[Candidate],
    budgets: &HashMap<PolicyId, Budget>,
    order_amount: Money,
    free_slots: usize,
) -> Best {
    let mut found = Best { coupons: Vec::new(), discount: Money::from(0) };
    for mask in 0u32..(1 << candidates.len()) {
        let chosen: Vec<&Candidate> =
            candidates.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, c)| c).collect();
        if !allowed(&chosen, budgets, free_slots) {
            continue;
        }
        let sum: Decimal = chosen.iter().map(|c| c.discount.amount()).sum();
        let here = Best {
            coupons: chosen.iter().map(|c| c.coupon).collect(),
            discount: Money::new(sum).min(order_amount),
        };
        if rank(&here) < rank(&found) {
            found = here;
        }
    }
    found
}

fn allowed(chosen: &[&Candidate], budgets: &HashMap<PolicyId, Budget>, free_slots: usize) -> bool {
    let exclusive = chosen.len() == 1 && !chosen[0].stackable;
    let stacked = chosen.iter().all(|c| c.stackable) && chosen.len() <= free_slots;
    let within_budgets = budgets.iter().all(|(policy, budget)| {
        let taken: Decimal = chosen.iter().filter(|c| c.policy == *policy).map(|c| c.discount.amount()).sum();
        taken <= budget.remaining().amount()
    });
    (exclusive || stacked) && within_budgets
}

fn candidates_strategy() -> impl Strategy<Value = (Vec<Candidate>, HashMap<PolicyId, Budget>, i64, usize)> {
    // Up to 9 coupons of up to 4 policies; one discount and stackability per policy.
    let policies = prop::collection::vec((1i64..=6, any::<bool>(), prop::option::of(0i64..=12)), 4);
    (policies, prop::collection::vec(0usize..4, 0..=9), 1i64..=30, 0usize..=5).prop_map(
        |(policies, owners, amount, free_slots)| {
            let candidates = owners
                .iter()
                .enumerate()
                .map(|(i, &p)| Candidate {
                    coupon: coupon_id(i as i64 + 1),
                    policy: policy_id(p as i64 + 1),
                    stackable: policies[p].1,
                    discount: Money::from(policies[p].0 * 1_000),
                })
                .collect();
            let budgets = policies
                .iter()
                .enumerate()
                .filter_map(|(p, (_, _, room))| {
                    room.map(|room| {
                        (
                            policy_id(p as i64 + 1),
                            Budget { amount: Money::from(room * 1_000), used: Money::from(0) },
                        )
                    })
                })
                .collect();
            (candidates, budgets, amount * 1_000, free_slots)
        },
    )
}

proptest! {
    #[test]
    fn best_is_the_best_allowed_combination((candidates, budgets, amount, free_slots) in candidates_strategy()) {
        // `best` is given applicable coupons: each fits its budget on its own.
        let applicable: Vec<Candidate> = candidates
            .into_iter()
            .filter(|c| budgets.get(&c.policy).is_none_or(|b| c.discount <= b.remaining()))
            .collect();
        let order_amount = Money::from(amount);
        let greedy = best(&applicable, &budgets, order_amount, free_slots);
        let exhaustive = brute_force(&applicable, &budgets, order_amount, free_slots);
        let chosen: Vec<&Candidate> = applicable.iter().filter(|c| greedy.coupons.contains(&c.coupon)).collect();
        prop_assert!(greedy.coupons.is_empty() || allowed(&chosen, &budgets, free_slots), "{greedy:?} is not allowed");
        prop_assert_eq!(greedy.discount, exhaustive.discount, "{:?} vs {:?}", greedy, exhaustive);
        prop_assert_eq!(greedy.coupons.len(), exhaustive.coupons.len(), "{:?} vs {:?}", greedy, exhaustive);
    }
}
