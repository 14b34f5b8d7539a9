//! Issued coupons (SPEC §4.2): their status and their lifetime.

use chrono::{DateTime, Days, LocalResult, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Status of an issued coupon (SPEC §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CouponStatus {
    Issued,
    Reserved,
    Used,
    Expired,
    Cancelled,
}

impl CouponStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CouponStatus::Issued => "ISSUED",
            CouponStatus::Reserved => "RESERVED",
            CouponStatus::Used => "USED",
            CouponStatus::Expired => "EXPIRED",
            CouponStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Issued, Self::Reserved, Self::Used, Self::Expired, Self::Cancelled]
            .into_iter()
            .find(|status| status.as_str() == s)
    }

    /// The status every read reports: an `ISSUED` coupon whose date has passed is `EXPIRED` at
    /// once, before the expiry job flips the row (SPEC §4.2). A `RESERVED` one stays `RESERVED`
    /// until its reservation resolves.
    pub fn effective(self, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        if self == CouponStatus::Issued && now > expires_at { CouponStatus::Expired } else { self }
    }
}

/// When a coupon issued at `issued_at` stops being usable: 23:59:59 in the business time zone on
/// the day `issued_at + valid_days` (SPEC §4.2). Issued 2024-01-01T10:00 with 30 days → 2024-01-31
/// 23:59:59.
pub fn expires_at(issued_at: DateTime<Utc>, valid_days: u32, zone: Tz) -> DateTime<Utc> {
    let issued_day = issued_at.with_timezone(&zone).date_naive();
    let last_day = issued_day.checked_add_days(Days::new(u64::from(valid_days))).unwrap_or(issued_day);
    let end_of_day = NaiveTime::from_hms_opt(23, 59, 59).unwrap_or(NaiveTime::MIN);
    let local = last_day.and_time(end_of_day);
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        // The later instant of a repeated hour keeps the coupon usable for the whole local day.
        LocalResult::Ambiguous(_, later) => later.with_timezone(&Utc),
        // 23:59:59 skipped by a DST jump (no such zone today): the day ends at the jump.
        LocalResult::None => zone
            .from_local_datetime(&last_day.succ_opt().unwrap_or(last_day).and_time(NaiveTime::MIN))
            .earliest()
            .map_or(issued_at, |t| t.with_timezone(&Utc)),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, s).single().expect("valid instant")
    }

    #[test]
    fn spec_example_in_utc() {
        assert_eq!(expires_at(utc(2024, 1, 1, 10, 0, 0), 30, Tz::UTC), utc(2024, 1, 31, 23, 59, 59));
    }

    #[test]
    fn the_day_is_counted_in_the_business_time_zone() {
        // 2024-01-01T20:00Z is already 2024-01-02 05:00 in Seoul.
        let seoul = chrono_tz::Asia::Seoul;
        assert_eq!(expires_at(utc(2024, 1, 1, 20, 0, 0), 1, seoul), utc(2024, 1, 3, 14, 59, 59));
    }

    #[test]
    fn a_date_expired_issued_coupon_reads_as_expired() {
        let end = utc(2024, 1, 31, 23, 59, 59);
        assert_eq!(CouponStatus::Issued.effective(end, end), CouponStatus::Issued);
        assert_eq!(CouponStatus::Issued.effective(end, utc(2024, 2, 1, 0, 0, 0)), CouponStatus::Expired);
        assert_eq!(CouponStatus::Reserved.effective(end, utc(2024, 2, 1, 0, 0, 0)), CouponStatus::Reserved);
        assert_eq!(CouponStatus::parse("USED"), Some(CouponStatus::Used));
        assert_eq!(CouponStatus::parse("used"), None);
    }
}

/// Why a coupon expired (`coupon.expired` `data.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryReason {
    /// Its date passed.
    ValidityPeriod,
    /// Its policy was deactivated with `expireIssued=true` (SPEC §11.2).
    PolicyDeactivated,
}

impl ExpiryReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ExpiryReason::ValidityPeriod => "VALIDITY_PERIOD_EXPIRED",
            ExpiryReason::PolicyDeactivated => "POLICY_DEACTIVATED",
        }
    }
}

/// An issued coupon as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCoupon {
    pub id: crate::id::CouponId,
    pub policy_id: crate::id::PolicyId,
    pub user_id: crate::id::UserId,
    pub status: CouponStatus,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub reserved_at: Option<DateTime<Utc>>,
    pub used_at: Option<DateTime<Utc>>,
    pub reservation_id: Option<String>,
    pub order_id: Option<String>,
    /// The discount granted by the use that consumed it.
    pub discount_amount: Option<crate::money::Money>,
}

impl IssuedCoupon {
    /// The coupon held by `reservation`: it shows the hold's order and discount while the hold
    /// lasts (SPEC §11.2).
    pub fn held_by(mut self, reservation: &crate::reservation::Reservation) -> Self {
        self.status = CouponStatus::Reserved;
        self.reservation_id = Some(reservation.id.as_str().to_owned());
        self.reserved_at = Some(reservation.reserved_at);
        self.order_id = reservation.order_id.as_ref().map(|o| o.as_str().to_owned());
        self.discount_amount = Some(reservation.discount);
        self
    }

    /// The coupon an admin revoked: `CANCELLED`, its user slot free again.
    pub fn revoke(mut self) -> Self {
        self.status = CouponStatus::Cancelled;
        self
    }

    /// The coupon past its date, unused and not held (the expiry job): `EXPIRED`, told by
    /// `coupon.expired`. A held coupon waits for its reservation to resolve.
    pub fn expire(mut self) -> Self {
        self.status = CouponStatus::Expired;
        self
    }

    /// The coupon given back after its use was undone (an order cancelled after payment): usable
    /// again, or `EXPIRED` when its date has passed, with `coupon.expired` then.
    pub fn restored(mut self, expired: bool) -> Self {
        self.status = if expired { CouponStatus::Expired } else { CouponStatus::Issued };
        self.reservation_id = None;
        self.order_id = None;
        self.discount_amount = None;
        self.reserved_at = None;
        self.used_at = None;
        self
    }
}
