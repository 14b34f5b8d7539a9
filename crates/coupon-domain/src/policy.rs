//! Coupon policies (SPEC §4.1): the campaign rules coupons are issued under.

use chrono::{DateTime, Utc};

use crate::discount::DiscountRule;
use crate::id::PolicyId;
use crate::money::Money;

/// The channel through which a policy's coupons are issued. A policy issues only through its own
/// channel (`INVALID_ISSUE_TYPE` otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DistributionType {
    /// The user types the policy's coupon code.
    Code,
    /// The user downloads by policy id.
    Download,
    /// Download by policy id with limited stock under bursts.
    FirstCome,
    /// Issued when a `coupon.issue-requested` Kafka event asks.
    Event,
    /// An admin issues to a list of users.
    Direct,
}

impl DistributionType {
    pub const ALL: [DistributionType; 5] = [
        DistributionType::Code,
        DistributionType::Download,
        DistributionType::FirstCome,
        DistributionType::Event,
        DistributionType::Direct,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DistributionType::Code => "CODE",
            DistributionType::Download => "DOWNLOAD",
            DistributionType::FirstCome => "FIRST_COME",
            DistributionType::Event => "EVENT",
            DistributionType::Direct => "DIRECT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// How a CODE policy's codes are given out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CodeMode {
    /// One code for everyone: the policy's `couponCode` (the guide's).
    #[default]
    Shared,
    /// Generated single-use codes.
    Unique,
}

impl CodeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeMode::Shared => "SHARED",
            CodeMode::Unique => "UNIQUE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [CodeMode::Shared, CodeMode::Unique].into_iter().find(|m| m.as_str() == s)
    }
}

/// A coupon code: trimmed, upper-case, 1–50 characters of `A-Z 0-9 - _`. Input is parsed once,
/// so `" welcome2024 "` and `"WELCOME2024"` are the same code everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CouponCode(String);

/// Why a string is not a coupon code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a coupon code is 1 to 50 characters of letters, digits, '-' and '_'")]
pub struct InvalidCouponCode;

impl CouponCode {
    /// # Errors
    /// When the trimmed input is empty, too long, or has other characters.
    pub fn parse(raw: &str) -> Result<Self, InvalidCouponCode> {
        let code = raw.trim().to_ascii_uppercase();
        let legal = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if code.is_empty() || code.len() > 50 || !code.chars().all(legal) {
            return Err(InvalidCouponCode);
        }
        Ok(Self(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A unique code (SPEC §11.6) found by a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueCode {
    pub code: CouponCode,
    pub policy: PolicyId,
    pub redeemed: bool,
}

/// When coupons may be issued: `from` inclusive, `until` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuanceWindow {
    from: DateTime<Utc>,
    until: DateTime<Utc>,
}

/// `valid_from` is not before `valid_until` (`INVALID_DATE_RANGE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("validFrom must be before validUntil")]
pub struct InvalidDateRange;

impl IssuanceWindow {
    /// # Errors
    /// When `from` is not strictly before `until`.
    pub fn new(from: DateTime<Utc>, until: DateTime<Utc>) -> Result<Self, InvalidDateRange> {
        if from < until { Ok(Self { from, until }) } else { Err(InvalidDateRange) }
    }

    pub fn from(&self) -> DateTime<Utc> {
        self.from
    }

    pub fn until(&self) -> DateTime<Utc> {
        self.until
    }
}

/// A policy as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub id: PolicyId,
    pub name: String,
    pub code: Option<CouponCode>,
    pub description: Option<String>,
    pub discount: DiscountRule,
    pub distribution: DistributionType,
    /// `None` = unlimited. The total cap; it never counts down.
    pub max_issue_count: Option<u32>,
    /// Coupons issued so far.
    pub current_issue_count: u32,
    pub max_issue_per_user: u16,
    /// Lifetime of an issued coupon in days.
    pub valid_days: u32,
    pub window: IssuanceWindow,
    pub is_active: bool,
    /// How a CODE policy's codes are given out (SPEC §11.6).
    pub code_mode: CodeMode,
    /// May share an order with other stackable coupons (SPEC §11.4).
    pub stackable: bool,
    /// The most its coupons may give away; `None` = no budget (SPEC §11.5).
    pub budget_amount: Option<Money>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Why a policy cannot issue a coupon now. The database re-checks each of these in the issuing
/// transaction; this is the early answer that spares it the losers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotIssuable {
    /// `POLICY_INACTIVE`
    #[error("the coupon policy is not active")]
    Inactive,
    /// `INVALID_ISSUE_TYPE`
    #[error("this coupon is not issued through this channel")]
    WrongChannel,
    /// `COUPON_ISSUE_PERIOD_NOT_STARTED`
    #[error("the issuance period has not started")]
    NotStarted,
    /// `COUPON_ISSUE_PERIOD_EXPIRED`
    #[error("the issuance period has ended")]
    Ended,
    /// `COUPON_SOLD_OUT`
    #[error("the coupon is sold out")]
    SoldOut,
}

impl Policy {
    /// Coupons left under the cap; `None` when unlimited.
    pub fn remaining(&self) -> Option<u32> {
        self.max_issue_count.map(|cap| cap.saturating_sub(self.current_issue_count))
    }

    /// Whether a coupon can be issued through `channel` at `now`: the wrong channel or an inactive
    /// policy first, then time. Stock is decided later, by the gate and the store.
    ///
    /// # Errors
    /// The first rule that refuses.
    pub fn check_issuable(&self, channel: DistributionType, now: DateTime<Utc>) -> Result<(), NotIssuable> {
        if self.distribution != channel {
            return Err(NotIssuable::WrongChannel);
        }
        if !self.is_active {
            return Err(NotIssuable::Inactive);
        }
        if now < self.window.from {
            return Err(NotIssuable::NotStarted);
        }
        if now >= self.window.until {
            return Err(NotIssuable::Ended);
        }
        Ok(())
    }

    /// Why the counter refused to grant a unit through `channel` at `at`: the first rule of
    /// [`Policy::check_issuable`] that refuses, else the cap (the one rule left that the counter
    /// enforces).
    pub fn why_counter_refused(&self, channel: DistributionType, at: DateTime<Utc>) -> NotIssuable {
        self.check_issuable(channel, at).err().unwrap_or(NotIssuable::SoldOut)
    }

    /// Whether the cap is reached. Not part of [`Policy::check_issuable`]: a user who already
    /// holds the coupon should hear `COUPON_ALREADY_ISSUED` rather than `COUPON_SOLD_OUT`, and
    /// only the gate or the store know who holds what.
    pub fn is_sold_out(&self) -> bool {
        self.remaining() == Some(0)
    }
}

/// A policy to create, valid by construction except for what only the store can check (the
/// uniqueness of the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPolicy {
    pub name: String,
    pub code: Option<CouponCode>,
    pub description: Option<String>,
    pub discount: DiscountRule,
    pub distribution: DistributionType,
    pub max_issue_count: Option<u32>,
    pub max_issue_per_user: u16,
    pub valid_days: u32,
    pub window: IssuanceWindow,
    pub is_active: bool,
    pub code_mode: CodeMode,
    pub stackable: bool,
    pub budget_amount: Option<Money>,
}

/// A change to a live policy. Only changes that cannot hurt holders or break promises already
/// made are allowed: a cap and a budget can only go up, the window can only be extended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyChange {
    pub name: Option<String>,
    pub description: Option<String>,
    pub max_issue_count: Option<u32>,
    pub valid_until: Option<DateTime<Utc>>,
    pub is_active: Option<bool>,
    pub budget_amount: Option<Money>,
}

/// A [`PolicyChange`] that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeRefused {
    #[error("maxIssueCount can only be raised (currently {current})")]
    CapLowered { current: String },
    #[error("validUntil can only be extended (currently {current})")]
    WindowShortened { current: DateTime<Utc> },
    #[error("budgetAmount can only be raised (currently {current})")]
    BudgetLowered { current: Money },
    /// A budget is set when the policy is created: what its coupons gave away before was not counted.
    #[error("budgetAmount can only be set when the policy is created")]
    BudgetAdded,
}

impl PolicyChange {
    /// The policy after the change.
    ///
    /// # Errors
    /// When the change lowers the cap or shortens the window.
    pub fn apply(&self, policy: &Policy) -> Result<Policy, ChangeRefused> {
        let mut next = policy.clone();
        if let Some(name) = &self.name {
            next.name.clone_from(name);
        }
        if let Some(description) = &self.description {
            next.description = Some(description.clone());
        }
        if let Some(cap) = self.max_issue_count {
            match policy.max_issue_count {
                Some(current) if cap >= current => next.max_issue_count = Some(cap),
                Some(current) => {
                    return Err(ChangeRefused::CapLowered { current: current.to_string() });
                }
                None => {
                    return Err(ChangeRefused::CapLowered { current: "unlimited".into() });
                }
            }
        }
        if let Some(until) = self.valid_until {
            if until < policy.window.until() {
                return Err(ChangeRefused::WindowShortened { current: policy.window.until() });
            }
            next.window = IssuanceWindow { from: policy.window.from(), until };
        }
        if let Some(active) = self.is_active {
            next.is_active = active;
        }
        if let Some(budget) = self.budget_amount {
            match policy.budget_amount {
                Some(current) if budget >= current => next.budget_amount = Some(budget),
                Some(current) => return Err(ChangeRefused::BudgetLowered { current }),
                None => return Err(ChangeRefused::BudgetAdded),
            }
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use crate::clock::{Clock, SystemClock};
    use chrono::Duration;
    use rust_decimal::Decimal;

    use super::*;
    use crate::discount::DiscountType;

    fn policy(distribution: DistributionType, cap: Option<u32>, issued: u32) -> Policy {
        let now = SystemClock.now();
        Policy {
            id: PolicyId::new(1).expect("id"),
            name: "Launch".into(),
            code: None,
            description: None,
            discount: DiscountRule::new(DiscountType::FixedAmount, Decimal::from(1000), None, None)
                .expect("rule"),
            distribution,
            max_issue_count: cap,
            current_issue_count: issued,
            max_issue_per_user: 1,
            valid_days: 30,
            window: IssuanceWindow::new(now - Duration::days(1), now + Duration::days(1)).expect("window"),
            is_active: true,
            code_mode: CodeMode::Shared,
            stackable: false,
            budget_amount: None,
            version: 0,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_counter_refusal_names_the_first_broken_rule_else_the_cap() {
        let now = SystemClock.now();
        let open = policy(DistributionType::Download, Some(5), 5);
        assert_eq!(open.why_counter_refused(DistributionType::Download, now), NotIssuable::SoldOut);
        assert_eq!(open.why_counter_refused(DistributionType::Code, now), NotIssuable::WrongChannel);
        let inactive = Policy { is_active: false, ..open.clone() };
        assert_eq!(inactive.why_counter_refused(DistributionType::Download, now), NotIssuable::Inactive);
        let later = now + Duration::days(2);
        assert_eq!(open.why_counter_refused(DistributionType::Download, later), NotIssuable::Ended);
    }

    #[test]
    fn codes_are_trimmed_and_upper_cased() {
        assert_eq!(CouponCode::parse("  welcome-2024 ").map(|c| c.0), Ok("WELCOME-2024".to_owned()));
        assert!(CouponCode::parse("   ").is_err());
        assert!(CouponCode::parse("two words").is_err());
        assert!(CouponCode::parse(&"A".repeat(51)).is_err());
        assert!(CouponCode::parse(&"A".repeat(50)).is_ok());
    }

    #[test]
    fn window_must_be_ordered() {
        let now = SystemClock.now();
        assert_eq!(IssuanceWindow::new(now, now), Err(InvalidDateRange));
        assert!(IssuanceWindow::new(now, now + Duration::seconds(1)).is_ok());
    }

    #[test]
    fn issuability_checks_channel_activity_window_and_stock() {
        let now = SystemClock.now();
        let p = policy(DistributionType::FirstCome, Some(10), 3);
        assert_eq!(p.check_issuable(DistributionType::FirstCome, now), Ok(()));
        assert_eq!(p.check_issuable(DistributionType::Download, now), Err(NotIssuable::WrongChannel));
        assert_eq!(
            p.check_issuable(DistributionType::FirstCome, now - Duration::days(2)),
            Err(NotIssuable::NotStarted)
        );
        assert_eq!(
            p.check_issuable(DistributionType::FirstCome, now + Duration::days(2)),
            Err(NotIssuable::Ended)
        );
        let inactive = Policy { is_active: false, ..p.clone() };
        assert_eq!(inactive.check_issuable(DistributionType::FirstCome, now), Err(NotIssuable::Inactive));
        let sold_out = policy(DistributionType::FirstCome, Some(3), 3);
        assert_eq!(sold_out.check_issuable(DistributionType::FirstCome, now), Ok(()));
        assert!(sold_out.is_sold_out());
        assert!(!p.is_sold_out());
        assert_eq!(policy(DistributionType::Download, None, 1_000_000).remaining(), None);
    }

    #[test]
    fn changes_only_raise_the_cap_and_extend_the_window() {
        let p = policy(DistributionType::Download, Some(100), 10);
        let raised = PolicyChange { max_issue_count: Some(200), ..Default::default() }.apply(&p);
        assert_eq!(raised.map(|p| p.max_issue_count), Ok(Some(200)));
        let lowered = PolicyChange { max_issue_count: Some(99), ..Default::default() }.apply(&p);
        assert!(matches!(lowered, Err(ChangeRefused::CapLowered { .. })));
        let shorter =
            PolicyChange { valid_until: Some(p.window.until() - Duration::hours(1)), ..Default::default() };
        assert!(matches!(shorter.apply(&p), Err(ChangeRefused::WindowShortened { .. })));
        let longer =
            PolicyChange { valid_until: Some(p.window.until() + Duration::days(7)), ..Default::default() };
        assert_eq!(longer.apply(&p).map(|n| n.window.until()), Ok(p.window.until() + Duration::days(7)));
        let budget =
            |amount: i64| PolicyChange { budget_amount: Some(Money::from(amount)), ..Default::default() };
        assert_eq!(budget(10).apply(&p), Err(ChangeRefused::BudgetAdded));
        let funded = Policy { budget_amount: Some(Money::from(1_000)), ..p };
        assert_eq!(budget(2_000).apply(&funded).map(|n| n.budget_amount), Ok(Some(Money::from(2_000))));
        assert!(matches!(budget(999).apply(&funded), Err(ChangeRefused::BudgetLowered { .. })));
    }
}

/// Per-policy statistics (SPEC §5, pinned details).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyStatistics {
    pub policy_id: PolicyId,
    pub max_issue_count: Option<u32>,
    pub issued: u64,
    pub reserved: u64,
    pub used: u64,
    /// Expired by the job or by date.
    pub expired: u64,
    pub cancelled: u64,
    pub remaining: Option<u64>,
    pub total_discount: Money,
    pub last_issued_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// The budget and what the live reservations take of it; `None` without a budget.
    pub budget: Option<crate::budget::Budget>,
}

impl PolicyStatistics {
    /// used / issued × 100, rounded to two decimals; 0 when nothing was issued.
    pub fn usage_rate(&self) -> rust_decimal::Decimal {
        if self.issued == 0 {
            return rust_decimal::Decimal::ZERO;
        }
        (rust_decimal::Decimal::from(self.used) * rust_decimal::Decimal::ONE_HUNDRED
            / rust_decimal::Decimal::from(self.issued))
        .round_dp(2)
    }
}

/// A policy could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreatePolicyError {
    /// `DUPLICATE_COUPON_CODE`
    #[error("another policy already uses this coupon code")]
    DuplicateCode,
    #[error(transparent)]
    Store(#[from] crate::port::StoreError),
}

/// A policy could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum SavePolicyError {
    /// `POLICY_NOT_FOUND`
    #[error("no coupon policy has this id")]
    NotFound,
    /// `CONCURRENT_MODIFICATION`: it changed since it was read.
    #[error("the policy was changed concurrently; read it again")]
    Conflict,
    #[error(transparent)]
    Store(#[from] crate::port::StoreError),
}

/// The cap could not be set.
#[derive(Debug, thiserror::Error)]
pub enum SetCapError {
    /// `POLICY_NOT_FOUND`
    #[error("no coupon policy has this id")]
    NotFound,
    /// The new cap is below what is already issued.
    #[error("the new maximum is below the {issued} coupons already issued")]
    BelowIssued { issued: u32 },
    #[error(transparent)]
    Store(#[from] crate::port::StoreError),
}

/// A cap change as applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapChange {
    pub previous: Option<u32>,
    pub policy: Policy,
}
