//! Quote (SPEC §11.3): which of the caller's coupons is best for an order.
//!
//! Each AVAILABLE coupon is judged by the reserve's own hold rule ([`decide_hold`]) against what a
//! reserve would read now (the order's live reservations, the policy's budget), so a coupon is
//! quoted applicable exactly when a reserve would hold it. `best` is the allowed combination with
//! the largest discount (§11.4): one non-stackable coupon, or stackable ones up to the order's free
//! slots, their sum capped at the order amount. A quote reads only: it holds, writes and publishes
//! nothing.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::budget::Budget;
use crate::clock::Clock;
use crate::coupon::CouponStatus;
use crate::discount::DiscountError;
use crate::id::{CouponId, PolicyId, UserId};
use crate::money::Money;
use crate::policy::Policy;
use crate::port::{PortFuture, StoreError};
use crate::reservation::{CheckoutRules, ExternalRef, HoldRefused, HoldView, ReserveError, decide_hold};
use crate::stacking::OrderStack;

/// A policy of the caller's AVAILABLE coupons as a quote reads it: the policy, its budget, its
/// coupons (each ISSUED and in date when read) and the earliest of their dates.
#[derive(Debug, Clone)]
pub struct PolicyCoupons {
    pub policy: Policy,
    pub budget: Option<Budget>,
    pub coupons: Vec<CouponId>,
    pub earliest_expiry: DateTime<Utc>,
}

/// What a quote reads: the caller's AVAILABLE coupons by policy, and what the order's live
/// reservations hold (nothing without an orderId).
#[derive(Debug, Clone, Default)]
pub struct QuoteView {
    pub wallet: Vec<PolicyCoupons>,
    pub order: OrderStack,
}

/// Reads for quotes.
pub trait QuoteStore: Send + Sync + 'static {
    /// `user`'s coupons that are ISSUED and in date at `now`, and what `order`'s live reservations hold.
    fn quote_view<'a>(
        &'a self,
        user: UserId,
        order: Option<&'a ExternalRef>,
        now: DateTime<Utc>,
    ) -> PortFuture<'a, Result<QuoteView, StoreError>>;
}

/// What the hold rule says of the coupons of one policy.
#[derive(Debug)]
pub struct Verdict {
    pub policy: Arc<Policy>,
    /// The discount a reserve would hold, or why a reserve would be refused.
    pub outcome: Result<Money, HoldRefused>,
}

/// One coupon of a quote, and the place of its verdict in [`Quote::verdicts`].
#[derive(Debug, Clone, Copy)]
pub struct QuoteLine {
    pub coupon: CouponId,
    pub verdict: usize,
}

/// The best allowed combination: its coupons (best first) and their capped discount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Best {
    pub coupons: Vec<CouponId>,
    pub discount: Money,
}

/// A quote for one order.
#[derive(Debug)]
pub struct Quote {
    pub order_amount: Money,
    pub verdicts: Vec<Verdict>,
    /// Newest coupon first.
    pub lines: Vec<QuoteLine>,
    pub best: Best,
}

impl Quote {
    /// The verdict on `line`'s coupon.
    pub fn verdict(&self, line: QuoteLine) -> &Verdict {
        &self.verdicts[line.verdict]
    }

    /// What the customer would pay with `discount`.
    pub fn final_amount(&self, discount: Money) -> Money {
        Money::new(self.order_amount.amount() - discount.amount())
    }
}

/// A coupon `best` may pick: applicable, with its discount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub coupon: CouponId,
    pub policy: PolicyId,
    pub stackable: bool,
    pub discount: Money,
}

/// Judges the coupons of `view` by the hold rule and picks the best combination. The view holds
/// only the caller's AVAILABLE coupons, so the owner check of a reserve passes for each, and each
/// is ISSUED.
///
/// The hold rule reads a coupon only for its state and whether its date has passed; every other
/// input is its policy's or the order's. The view's coupons are all ISSUED and in date at `now`,
/// so the coupons of one policy share one verdict, judged once at the earliest of their dates.
pub fn quote(
    view: QuoteView,
    order_amount: Money,
    order: Option<&ExternalRef>,
    now: DateTime<Utc>,
    rules: &CheckoutRules,
) -> Quote {
    let order_stack = order.map(|_| view.order);
    let mut verdicts = Vec::new();
    let mut lines = Vec::new();
    let mut candidates = Vec::new();
    let mut budgets: HashMap<PolicyId, Budget> = HashMap::new();
    for PolicyCoupons { policy, budget, coupons, earliest_expiry } in view.wallet {
        if coupons.is_empty() {
            continue;
        }
        if let Some(budget) = budget {
            budgets.insert(policy.id, budget);
        }
        let hold = HoldView {
            status: CouponStatus::Issued,
            expires_at: earliest_expiry,
            policy: &policy,
            budget,
            order: order_stack,
            order_amount,
        };
        let outcome = decide_hold(&hold, now, rules).map(|terms| terms.discount);
        let place = verdicts.len();
        for coupon in coupons {
            if let Ok(discount) = outcome {
                candidates.push(Candidate {
                    coupon,
                    policy: policy.id,
                    stackable: policy.stackable,
                    discount,
                });
            }
            lines.push(QuoteLine { coupon, verdict: place });
        }
        verdicts.push(Verdict { policy: Arc::new(policy), outcome });
    }
    lines.sort_unstable_by_key(|line| std::cmp::Reverse(line.coupon));
    let free_slots = view.order.room(rules.max_per_order);
    let best = best(&candidates, &budgets, order_amount, free_slots);
    Quote { order_amount, verdicts, lines, best }
}

/// The best allowed combination of `candidates` (each applicable on its own): the larger of the
/// best single non-stackable coupon and the best set of at most `free_slots` stackable coupons
/// whose discounts fit their policies' `budgets` together; a sum is capped at `order_amount`.
/// Ties go to fewer coupons, then to lower coupon ids.
///
/// All coupons of one policy give the same discount on one order amount, so the best stackable
/// set takes, policy by policy from the largest discount down, as many coupons as the policy has,
/// its budget allows and slots remain, and stops once the order amount is reached.
pub fn best(
    candidates: &[Candidate],
    budgets: &HashMap<PolicyId, Budget>,
    order_amount: Money,
    free_slots: usize,
) -> Best {
    let cap = |discount: Money| discount.min(order_amount);
    let sorted = largest_discount_first(candidates);
    let single = sorted
        .iter()
        .find(|c| !c.stackable)
        .map(|c| Best { coupons: vec![c.coupon], discount: cap(c.discount) });

    let mut rooms: HashMap<PolicyId, Money> = budgets.iter().map(|(p, b)| (*p, b.remaining())).collect();
    let mut coupons = Vec::new();
    let mut sum = Money::from(0);
    for candidate in sorted.iter().filter(|c| c.stackable) {
        if coupons.len() == free_slots || sum >= order_amount {
            break;
        }
        if let Some(room) = rooms.get_mut(&candidate.policy) {
            if candidate.discount > *room {
                continue;
            }
            *room = Money::new(room.amount() - candidate.discount.amount());
        }
        coupons.push(candidate.coupon);
        sum = Money::new(sum.amount() + candidate.discount.amount());
    }
    let stacked = Best { coupons, discount: cap(sum) };
    let none = Best { coupons: Vec::new(), discount: Money::from(0) };
    [single, Some(stacked)].into_iter().flatten().min_by(|a, b| rank(a).cmp(&rank(b))).unwrap_or(none)
}

/// The candidates with a positive discount, the largest discount first, then the lowest coupon id.
///
/// A decimal comparison costs far more than an integer one, and the coupons of one verdict share
/// their discount and come together: so each run of equal discounts is ranked once among the few
/// distinct discounts, and the sort compares ranks.
fn largest_discount_first(candidates: &[Candidate]) -> Vec<&Candidate> {
    let positive = candidates.iter().filter(|c| c.discount.is_positive());
    let mut distinct: Vec<Money> = Vec::new();
    for c in positive.clone() {
        if distinct.last() != Some(&c.discount) {
            distinct.push(c.discount);
        }
    }
    distinct.sort_unstable_by(|a, b| b.cmp(a));
    distinct.dedup();
    let mut ranked: Vec<(usize, CouponId, &Candidate)> = Vec::with_capacity(candidates.len());
    let mut run: Option<(Money, usize)> = None;
    for c in positive {
        let rank = match run {
            Some((discount, rank)) if discount == c.discount => rank,
            _ => {
                let rank = distinct.binary_search_by(|d| c.discount.cmp(d)).unwrap_or_else(|place| place);
                run = Some((c.discount, rank));
                rank
            }
        };
        ranked.push((rank, c.coupon, c));
    }
    ranked.sort_unstable_by_key(|&(rank, coupon, _)| (rank, coupon));
    ranked.into_iter().map(|(_, _, c)| c).collect()
}

/// How combinations compare: the larger discount, then fewer coupons, then lower coupon ids.
fn rank(best: &Best) -> (std::cmp::Reverse<Money>, usize, Vec<CouponId>) {
    let mut ids = best.coupons.clone();
    ids.sort_unstable();
    (std::cmp::Reverse(best.discount), best.coupons.len(), ids)
}

/// The quote use case: `POST /api/coupons/quote`.
#[derive(Clone)]
pub struct Quoting {
    store: Arc<dyn QuoteStore>,
    clock: Arc<dyn Clock>,
    rules: Arc<CheckoutRules>,
}

impl std::fmt::Debug for Quoting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quoting").finish_non_exhaustive()
    }
}

impl Quoting {
    pub fn new(store: Arc<dyn QuoteStore>, clock: Arc<dyn Clock>, rules: CheckoutRules) -> Self {
        Self { store, clock, rules: Arc::new(rules) }
    }

    /// # Errors
    /// `INVALID_ORDER_AMOUNT` for an amount that is not positive; the store's failures.
    pub async fn quote(
        &self,
        user: UserId,
        order_amount: Money,
        order: Option<&ExternalRef>,
    ) -> Result<Quote, ReserveError> {
        if !order_amount.is_positive() {
            return Err(DiscountError::InvalidOrderAmount.into());
        }
        let now = self.clock.now();
        let view = self.store.quote_view(user, order, now).await?;
        Ok(quote(view, order_amount, order, now, &self.rules))
    }
}

#[cfg(test)]
mod tests;
