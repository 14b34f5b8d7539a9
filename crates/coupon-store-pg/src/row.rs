//! Rows as stored, and their conversion to and from domain types. Conversions from rows are
//! fallible: a value the domain rejects is reported as a corrupt row, never unwrapped.

use chrono::{DateTime, Utc};
use coupon_domain::budget::Budget;
use coupon_domain::coupon::{CouponStatus, IssuedCoupon};
use coupon_domain::discount::{DiscountRule, DiscountType};
use coupon_domain::id::{CouponId, PolicyId, UserId};
use coupon_domain::money::Money;
use coupon_domain::policy::CodeMode;
use coupon_domain::policy::{CouponCode, DistributionType, IssuanceWindow, Policy};
use coupon_domain::port::StoreError;
use coupon_domain::reservation::{ExternalRef, Reservation, ReservationId, ReservationStatus};
use diesel::prelude::*;
use rust_decimal::Decimal;

use crate::error::corrupt;
use crate::schema::{coupon_issues, coupon_policies, coupon_reservations};

#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = coupon_policies, check_for_backend(diesel::pg::Pg))]
pub struct PolicyRow {
    pub id: i64,
    pub coupon_name: String,
    pub coupon_code: Option<String>,
    pub description: Option<String>,
    pub discount_type: String,
    pub discount_value: Decimal,
    pub minimum_order_amount: Option<Decimal>,
    pub max_discount_amount: Option<Decimal>,
    pub distribution_type: String,
    pub max_issue_count: Option<i32>,
    pub current_issue_count: i32,
    pub max_issue_per_user: i32,
    pub valid_days: i32,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    pub is_active: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub stackable: bool,
    pub budget_amount: Option<Decimal>,
    pub budget_used: Decimal,
    pub budget_alerted: i16,
    pub code_mode: String,
}

impl PolicyRow {
    /// The policy's budget as it stands; `None` without one.
    pub fn budget(&self) -> Option<Budget> {
        self.budget_amount
            .map(|amount| Budget { amount: Money::new(amount), used: Money::new(self.budget_used) })
    }

    /// The highest budget threshold announced so far (percent).
    pub fn budget_announced(&self) -> u8 {
        u8::try_from(self.budget_alerted).unwrap_or(0)
    }
}

impl TryFrom<PolicyRow> for Policy {
    type Error = StoreError;

    fn try_from(r: PolicyRow) -> Result<Self, StoreError> {
        let bad = |field: &str| corrupt("coupon_policies", format!("id {} has an invalid {field}", r.id));
        let discount_type = DiscountType::parse(&r.discount_type).ok_or_else(|| bad("discount_type"))?;
        let discount = DiscountRule::new(
            discount_type,
            r.discount_value,
            r.minimum_order_amount.map(Money::new),
            r.max_discount_amount.map(Money::new),
        )
        .map_err(|_| bad("discount"))?;
        Ok(Policy {
            id: PolicyId::new(r.id).ok_or_else(|| bad("id"))?,
            code: r
                .coupon_code
                .as_deref()
                .map(CouponCode::parse)
                .transpose()
                .map_err(|_| bad("coupon_code"))?,
            discount,
            distribution: DistributionType::parse(&r.distribution_type)
                .ok_or_else(|| bad("distribution_type"))?,
            max_issue_count: r
                .max_issue_count
                .map(u32::try_from)
                .transpose()
                .map_err(|_| bad("max_issue_count"))?,
            current_issue_count: u32::try_from(r.current_issue_count)
                .map_err(|_| bad("current_issue_count"))?,
            max_issue_per_user: u16::try_from(r.max_issue_per_user).map_err(|_| bad("max_issue_per_user"))?,
            valid_days: u32::try_from(r.valid_days).map_err(|_| bad("valid_days"))?,
            window: IssuanceWindow::new(r.valid_from, r.valid_until).map_err(|_| bad("window"))?,
            name: r.coupon_name,
            description: r.description,
            is_active: r.is_active,
            code_mode: CodeMode::parse(&r.code_mode).ok_or_else(|| bad("code_mode"))?,
            stackable: r.stackable,
            budget_amount: r.budget_amount.map(Money::new),
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = coupon_issues, check_for_backend(diesel::pg::Pg))]
pub struct CouponRow {
    pub id: i64,
    pub policy_id: i64,
    pub user_id: i64,
    pub status: String,
    pub reservation_id: Option<String>,
    pub order_id: Option<String>,
    pub discount_amount: Option<Decimal>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub reserved_at: Option<DateTime<Utc>>,
    pub used_at: Option<DateTime<Utc>>,
}

impl TryFrom<CouponRow> for IssuedCoupon {
    type Error = StoreError;

    fn try_from(r: CouponRow) -> Result<Self, StoreError> {
        let bad = |field: &str| corrupt("coupon_issues", format!("id {} has an invalid {field}", r.id));
        Ok(IssuedCoupon {
            id: CouponId::new(r.id).ok_or_else(|| bad("id"))?,
            policy_id: PolicyId::new(r.policy_id).ok_or_else(|| bad("policy_id"))?,
            user_id: UserId::new(r.user_id).ok_or_else(|| bad("user_id"))?,
            status: CouponStatus::parse(&r.status).ok_or_else(|| bad("status"))?,
            issued_at: r.issued_at,
            expires_at: r.expires_at,
            reserved_at: r.reserved_at,
            used_at: r.used_at,
            reservation_id: r.reservation_id,
            order_id: r.order_id,
            discount_amount: r.discount_amount.map(Money::new),
        })
    }
}

/// Columns of a new policy.
#[derive(Debug, Insertable)]
#[diesel(table_name = coupon_policies)]
pub struct NewPolicyRow<'a> {
    pub coupon_name: &'a str,
    pub coupon_code: Option<&'a str>,
    pub description: Option<&'a str>,
    pub discount_type: &'static str,
    pub discount_value: Decimal,
    pub minimum_order_amount: Option<Decimal>,
    pub max_discount_amount: Option<Decimal>,
    pub distribution_type: &'static str,
    pub max_issue_count: Option<i32>,
    pub max_issue_per_user: i32,
    pub valid_days: i32,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    pub is_active: bool,
    pub code_mode: &'static str,
    pub stackable: bool,
    pub budget_amount: Option<Decimal>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A count that must fit the column's type; larger values were refused by validation already.
pub fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = coupon_reservations, check_for_backend(diesel::pg::Pg))]
pub struct ReservationRow {
    pub reservation_id: String,
    pub coupon_id: i64,
    pub user_id: i64,
    pub order_id: Option<String>,
    pub order_amount: Decimal,
    pub discount_amount: Decimal,
    pub status: String,
    pub reserved_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub payment_id: Option<String>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub late_confirmation: bool,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
}

impl TryFrom<ReservationRow> for Reservation {
    type Error = StoreError;

    fn try_from(r: ReservationRow) -> Result<Self, StoreError> {
        let id = r.reservation_id;
        let bad = |field: &str| corrupt("coupon_reservations", format!("{id} has an invalid {field}"));
        let reference = |raw: Option<String>, max, field| {
            raw.map(|raw| ExternalRef::parse(&raw, max)).transpose().map_err(|_| bad(field))
        };
        Ok(Reservation {
            coupon_id: CouponId::new(r.coupon_id).ok_or_else(|| bad("coupon_id"))?,
            user_id: UserId::new(r.user_id).ok_or_else(|| bad("user_id"))?,
            order_id: reference(r.order_id, ExternalRef::ORDER_MAX, "order_id")?,
            order_amount: Money::new(r.order_amount),
            discount: Money::new(r.discount_amount),
            status: ReservationStatus::parse(&r.status).ok_or_else(|| bad("status"))?,
            reserved_at: r.reserved_at,
            expires_at: r.expires_at,
            payment_id: reference(r.payment_id, ExternalRef::PAYMENT_MAX, "payment_id")?,
            confirmed_at: r.confirmed_at,
            late_confirmation: r.late_confirmation,
            cancelled_at: r.cancelled_at,
            cancel_reason: r.cancel_reason,
            id: ReservationId::parse(&id).map_err(|_| bad("reservation_id"))?,
        })
    }
}
