//! The user's coupon wallet (SPEC §5): pages of their coupons by status, the ones about to expire,
//! and their totals; plus the daily statistics the scheduler keeps. Reads only.
//!
//! Statuses are as every read reports them (SPEC §4.2): an `ISSUED` coupon past its date is
//! `EXPIRED` here even before the expiry job flipped its row.

use chrono::{DateTime, NaiveDate, Utc};

use crate::coupon::IssuedCoupon;
use crate::id::{CouponId, PolicyId, UserId};
use crate::money::Money;
use crate::policy::Policy;
use crate::port::{PortFuture, StoreError};

/// Which of the user's coupons a page lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalletFilter {
    /// Every coupon, cancelled ones included.
    All,
    /// Usable now: `ISSUED` and not past its date.
    Available,
    /// Not used yet and not expired: `ISSUED` (in date) or `RESERVED`.
    Unused,
    Reserved,
    Used,
    /// `EXPIRED`, or `ISSUED` past its date.
    Expired,
}

impl WalletFilter {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "AVAILABLE" => WalletFilter::Available,
            "UNUSED" => WalletFilter::Unused,
            "RESERVED" => WalletFilter::Reserved,
            "USED" => WalletFilter::Used,
            "EXPIRED" => WalletFilter::Expired,
            _ => return None,
        })
    }
}

/// One page, newest coupon first. The cursor is the last coupon's id: ids are unique and the
/// order is by id alone, so walking pages never skips or repeats a coupon.
#[derive(Debug, Clone)]
pub struct WalletPage {
    pub coupons: Vec<(IssuedCoupon, Policy)>,
    pub next_cursor: Option<CouponId>,
    pub has_more: bool,
}

/// A user's totals (`GET /api/coupons/users/{userId}/statistics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletSummary {
    pub total: u64,
    pub available: u64,
    pub used: u64,
    pub expired: u64,
    /// Sum of the discounts of the user's used coupons.
    pub total_saved: Money,
}

/// One business day of `daily_statistics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyStatistics {
    pub date: NaiveDate,
    pub total_issued: u64,
    pub total_used: u64,
    pub total_reserved: u64,
    pub total_expired: u64,
    /// Coupons issued in each hour `0..24` of the day.
    pub issue_by_hour: [u64; 24],
    pub usage_by_hour: [u64; 24],
}

/// A policy a user may download now, as the catalogue shows it.
#[derive(Debug, Clone)]
pub struct CatalogueEntry {
    /// The policy as the page read it (its counter is as fresh as the read).
    pub policy: Policy,
    /// Coupons of it the user holds (not revoked).
    pub held: u32,
}

impl CatalogueEntry {
    /// Whether the cap is reached.
    pub fn sold_out(&self) -> bool {
        self.policy.remaining() == Some(0)
    }
}

/// One page of the catalogue, newest policy first; the cursor is the last policy id.
#[derive(Debug, Clone)]
pub struct CataloguePage {
    pub entries: Vec<CatalogueEntry>,
    pub next_cursor: Option<PolicyId>,
    pub has_more: bool,
}

/// The wallet's queries.
pub trait WalletStore: Send + Sync + 'static {
    /// Active DOWNLOAD and FIRST_COME policies within their window at `now`, with an id below
    /// `before`, newest first, at most `limit`, each with what `user` holds of it.
    fn catalogue(
        &self,
        user: UserId,
        before: Option<PolicyId>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> PortFuture<'_, Result<CataloguePage, StoreError>>;
    /// One coupon with its policy, whoever holds it.
    fn coupon(&self, id: CouponId) -> PortFuture<'_, Result<Option<(IssuedCoupon, Policy)>, StoreError>>;
    /// Coupons of `user` matching `filter` with an id below `before` (all when `None`), newest
    /// first, at most `limit`.
    fn page(
        &self,
        user: UserId,
        filter: WalletFilter,
        before: Option<CouponId>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> PortFuture<'_, Result<WalletPage, StoreError>>;
    /// Usable coupons of `user` whose date ends between `now` and `until`, soonest first.
    fn expiring(
        &self,
        user: UserId,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> PortFuture<'_, Result<Vec<(IssuedCoupon, Policy)>, StoreError>>;
    fn summary(&self, user: UserId, now: DateTime<Utc>) -> PortFuture<'_, Result<WalletSummary, StoreError>>;
    /// Rows of `daily_statistics` from `first` to `last`, by date.
    fn daily(
        &self,
        first: NaiveDate,
        last: NaiveDate,
    ) -> PortFuture<'_, Result<Vec<DailyStatistics>, StoreError>>;
}
