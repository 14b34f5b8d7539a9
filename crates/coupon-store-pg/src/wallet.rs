//! `WalletStore` on PostgreSQL. Every query starts from the user (`idx_coupon_issues_user`,
//! `idx_coupon_issues_user_status`), so its cost follows the size of one wallet, not of the
//! table; `tests/wallet.rs` checks the plans on a table of a million coupons.

use chrono::{DateTime, NaiveDate, Utc};
use coupon_domain::coupon::IssuedCoupon;
use coupon_domain::id::{CouponId, UserId};
use coupon_domain::money::Money;
use coupon_domain::policy::Policy;
use coupon_domain::port::{PortFuture, StoreError};
use coupon_domain::wallet::{DailyStatistics, WalletFilter, WalletPage, WalletStore, WalletSummary};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Numeric, Timestamptz};
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;

use crate::error::{corrupt, from_diesel, from_pool};
use crate::pool::PgPool;
use crate::row::{CouponRow, PolicyRow};
use crate::schema::{coupon_issues as c, coupon_policies as p, daily_statistics as d};

/// The wallet's queries in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgWalletStore {
    pool: PgPool,
}

impl PgWalletStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn pair((coupon, policy): (CouponRow, PolicyRow)) -> Result<(IssuedCoupon, Policy), StoreError> {
    Ok((IssuedCoupon::try_from(coupon)?, Policy::try_from(policy)?))
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn hours(value: &serde_json::Value, date: NaiveDate) -> Result<[u64; 24], StoreError> {
    let object = value.as_object().ok_or_else(|| corrupt("daily_statistics", format!("{date}: buckets")))?;
    let mut buckets = [0; 24];
    for (hour, n) in object {
        let slot = hour
            .parse::<usize>()
            .ok()
            .and_then(|h| buckets.get_mut(h))
            .ok_or_else(|| corrupt("daily_statistics", format!("{date}: hour {hour}")))?;
        *slot = n.as_u64().ok_or_else(|| corrupt("daily_statistics", format!("{date}: count {n}")))?;
    }
    Ok(buckets)
}

#[derive(QueryableByName)]
struct Summary {
    #[diesel(sql_type = BigInt)]
    total: i64,
    #[diesel(sql_type = BigInt)]
    available: i64,
    #[diesel(sql_type = BigInt)]
    used: i64,
    #[diesel(sql_type = BigInt)]
    expired: i64,
    #[diesel(sql_type = Numeric)]
    saved: Decimal,
}

impl WalletStore for PgWalletStore {
    fn page(
        &self,
        user: UserId,
        filter: WalletFilter,
        before: Option<CouponId>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> PortFuture<'_, Result<WalletPage, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            let mut query = c::table.inner_join(p::table).filter(c::user_id.eq(user.get())).into_boxed();
            if let Some(before) = before {
                query = query.filter(c::id.lt(before.get()));
            }
            let in_date = c::status.eq("ISSUED").and(c::expires_at.ge(now));
            query = match filter {
                WalletFilter::All => query,
                WalletFilter::Available => query.filter(in_date),
                WalletFilter::Unused => query.filter(c::status.eq("RESERVED").or(in_date)),
                WalletFilter::Reserved => query.filter(c::status.eq("RESERVED")),
                WalletFilter::Used => query.filter(c::status.eq("USED")),
                WalletFilter::Expired => query
                    .filter(c::status.eq("EXPIRED").or(c::status.eq("ISSUED").and(c::expires_at.lt(now)))),
            };
            let rows: Vec<(CouponRow, PolicyRow)> = query
                .order(c::id.desc())
                .limit(i64::from(limit) + 1)
                .select((CouponRow::as_select(), PolicyRow::as_select()))
                .load(&mut conn)
                .await
                .map_err(from_diesel)?;
            let has_more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
            let coupons = rows
                .into_iter()
                .take(usize::try_from(limit).unwrap_or(usize::MAX))
                .map(pair)
                .collect::<Result<Vec<_>, _>>()?;
            let next_cursor = if has_more { coupons.last().map(|(coupon, _)| coupon.id) } else { None };
            Ok(WalletPage { coupons, next_cursor, has_more })
        })
    }

    fn expiring(
        &self,
        user: UserId,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> PortFuture<'_, Result<Vec<(IssuedCoupon, Policy)>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            let rows: Vec<(CouponRow, PolicyRow)> = c::table
                .inner_join(p::table)
                .filter(c::user_id.eq(user.get()))
                .filter(c::status.eq("ISSUED"))
                .filter(c::expires_at.ge(now))
                .filter(c::expires_at.le(until))
                .order((c::expires_at.asc(), c::id.asc()))
                .limit(i64::from(limit))
                .select((CouponRow::as_select(), PolicyRow::as_select()))
                .load(&mut conn)
                .await
                .map_err(from_diesel)?;
            rows.into_iter().map(pair).collect()
        })
    }

    fn summary(&self, user: UserId, now: DateTime<Utc>) -> PortFuture<'_, Result<WalletSummary, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            // Revoked (CANCELLED) coupons are not the user's any more and count nowhere.
            let s: Summary = diesel::sql_query(
                "SELECT count(*) FILTER (WHERE status <> 'CANCELLED') AS total, \
                        count(*) FILTER (WHERE status = 'ISSUED' AND expires_at >= $2) AS available, \
                        count(*) FILTER (WHERE status = 'USED') AS used, \
                        count(*) FILTER (WHERE status = 'EXPIRED' OR (status = 'ISSUED' AND expires_at < $2)) \
                          AS expired, \
                        COALESCE(sum(discount_amount) FILTER (WHERE status = 'USED'), 0) AS saved \
                 FROM coupon_issues WHERE user_id = $1",
            )
            .bind::<BigInt, _>(user.get())
            .bind::<Timestamptz, _>(now)
            .get_result(&mut conn)
            .await
            .map_err(from_diesel)?;
            Ok(WalletSummary {
                total: count(s.total),
                available: count(s.available),
                used: count(s.used),
                expired: count(s.expired),
                total_saved: Money::new(s.saved),
            })
        })
    }

    fn daily(
        &self,
        first: NaiveDate,
        last: NaiveDate,
    ) -> PortFuture<'_, Result<Vec<DailyStatistics>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            type Row = (NaiveDate, i64, i64, i64, i64, serde_json::Value, serde_json::Value);
            let rows: Vec<Row> = d::table
                .filter(d::stat_date.between(first, last))
                .order(d::stat_date.asc())
                .select((
                    d::stat_date,
                    d::total_issued,
                    d::total_used,
                    d::total_reserved,
                    d::total_expired,
                    d::issue_by_hour,
                    d::usage_by_hour,
                ))
                .load(&mut conn)
                .await
                .map_err(from_diesel)?;
            rows.into_iter()
                .map(|(date, issued, used, reserved, expired, issue_by_hour, usage_by_hour)| {
                    Ok(DailyStatistics {
                        date,
                        total_issued: count(issued),
                        total_used: count(used),
                        total_reserved: count(reserved),
                        total_expired: count(expired),
                        issue_by_hour: hours(&issue_by_hour, date)?,
                        usage_by_hour: hours(&usage_by_hour, date)?,
                    })
                })
                .collect()
        })
    }
}
