//! `WalletStore` on PostgreSQL. Every query of coupons starts from the user
//! (`idx_coupon_issues_user_status`), so its cost follows the size of one
//! wallet, not of the table; the tests below check the plans on a table of a million coupons. The
//! catalogue reads a page of policies, then the user's coupons of those policies.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use coupon_domain::coupon::IssuedCoupon;

use coupon_domain::id::{CouponId, PolicyId, UserId};
use coupon_domain::money::Money;
use coupon_domain::policy::{DistributionType, Policy};
use coupon_domain::port::{PortFuture, StoreError};
use coupon_domain::quote::{PolicyCoupons, QuoteStore, QuoteView};
use coupon_domain::reservation::ExternalRef;
use coupon_domain::stacking::OrderStack;
use coupon_domain::wallet::{
    CatalogueEntry, CataloguePage, DailyStatistics, WalletFilter, WalletPage, WalletStore, WalletSummary,
};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Nullable, Numeric, SmallInt, Text, Timestamptz};
use diesel_async::methods::LoadQuery;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;

use crate::error::{corrupt, from_diesel, from_pool};
use crate::pool::PgPool;
use crate::prepared::Prepared;
use crate::reservation::counted;
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

/// The first `limit` of `rows` (read as `limit + 1`), and whether another page follows.
fn one_page<T>(mut rows: Vec<T>, limit: u32) -> (Vec<T>, bool) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    (rows, has_more)
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
pub(crate) struct Summary {
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

/// The coupons usable at `now` (the wallet's AVAILABLE): ISSUED and not past their date.
fn available(
    now: DateTime<Utc>,
) -> diesel::dsl::And<diesel::dsl::Eq<c::status, &'static str>, diesel::dsl::GtEq<c::expires_at, DateTime<Utc>>>
{
    c::status.eq("ISSUED").and(c::expires_at.ge(now))
}

/// A page of the user's coupons, newest first, one more than `limit` (to tell whether another
/// page follows). The queries are built apart from their execution so that the tests can EXPLAIN
/// exactly what runs.
pub(crate) fn page_query<'a>(
    user: UserId,
    filter: WalletFilter,
    before: Option<CouponId>,
    limit: u32,
    now: DateTime<Utc>,
) -> impl LoadQuery<'a, AsyncPgConnection, (CouponRow, PolicyRow)> + QueryFragment<Pg> + QueryId + Send + 'a {
    let mut query = c::table.inner_join(p::table).filter(c::user_id.eq(user.get())).into_boxed();
    if let Some(before) = before {
        query = query.filter(c::id.lt(before.get()));
    }
    let in_date = available(now);
    query = match filter {
        WalletFilter::All => query,
        WalletFilter::Available => query.filter(in_date),
        WalletFilter::Unused => query.filter(c::status.eq("RESERVED").or(in_date)),
        WalletFilter::Reserved => query.filter(c::status.eq("RESERVED")),
        WalletFilter::Used => query.filter(c::status.eq("USED")),
        WalletFilter::Expired => {
            query.filter(c::status.eq("EXPIRED").or(c::status.eq("ISSUED").and(c::expires_at.lt(now))))
        }
    };
    query
        .order(c::id.desc())
        .limit(i64::from(limit) + 1)
        .select((CouponRow::as_select(), PolicyRow::as_select()))
}

/// The user's usable coupons that expire between `now` and `until`, soonest first.
pub(crate) fn expiring_query<'a>(
    user: UserId,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: u32,
) -> impl LoadQuery<'a, AsyncPgConnection, (CouponRow, PolicyRow)> + QueryFragment<Pg> + QueryId + Send + 'a {
    c::table
        .inner_join(p::table)
        .filter(c::user_id.eq(user.get()))
        .filter(c::status.eq("ISSUED"))
        .filter(c::expires_at.ge(now))
        .filter(c::expires_at.le(until))
        .order((c::expires_at.asc(), c::id.asc()))
        .limit(i64::from(limit))
        .select((CouponRow::as_select(), PolicyRow::as_select()))
}

/// The user's counts and savings. Revoked (CANCELLED) coupons are not the user's any more and
/// count nowhere.
pub(crate) fn summary_query<'a>(
    user: UserId,
    now: DateTime<Utc>,
) -> impl LoadQuery<'a, AsyncPgConnection, Summary> + QueryFragment<Pg> + QueryId + Send + 'a {
    diesel::sql_query(
        "SELECT count(*) FILTER (WHERE status <> 'CANCELLED') AS total, \
                count(*) FILTER (WHERE status = 'ISSUED' AND expires_at >= $2) AS available, \
                count(*) FILTER (WHERE status = 'USED') AS used, \
                count(*) FILTER (WHERE status = 'EXPIRED' OR (status = 'ISSUED' AND expires_at < $2)) AS expired, \
                COALESCE(sum(discount_amount) FILTER (WHERE status = 'USED'), 0) AS saved \
         FROM coupon_issues WHERE user_id = $1",
    )
    .bind::<BigInt, _>(user.get())
    .bind::<Timestamptz, _>(now)
}

type DailyRow = (NaiveDate, i64, i64, i64, i64, serde_json::Value, serde_json::Value);

/// The statistics of the days `first..=last`.
pub(crate) fn daily_query<'a>(
    first: NaiveDate,
    last: NaiveDate,
) -> impl LoadQuery<'a, AsyncPgConnection, DailyRow> + QueryFragment<Pg> + QueryId + Send + 'a {
    d::table.filter(d::stat_date.between(first, last)).order(d::stat_date.asc()).select((
        d::stat_date,
        d::total_issued,
        d::total_used,
        d::total_reserved,
        d::total_expired,
        d::issue_by_hour,
        d::usage_by_hour,
    ))
}

/// The most coupons a quote judges: the caller's newest AVAILABLE ones.
pub const QUOTE_LIMIT: u32 = 1_000;

/// What a quote reads, in one statement: each policy of the caller's newest AVAILABLE coupons
/// once, with the ids of its coupons and the earliest of their dates (the hold rule reads nothing
/// else of a coupon, and every coupon read is in date at `$2`), and the stack of the order (`$4`,
/// NULL without an orderId: none).
const QUOTE_READ: &str = "SELECT p.*, c.ids, c.earliest_expiry, k.exclusive AS order_exclusive, k.stackable AS order_stackable \
     FROM (SELECT policy_id, array_agg(id) AS ids, min(expires_at) AS earliest_expiry \
           FROM (SELECT id, policy_id, expires_at FROM coupon_issues \
                 WHERE user_id = $1 AND status = 'ISSUED' AND expires_at >= $2 \
                 ORDER BY id DESC LIMIT $3) newest \
           GROUP BY policy_id) c \
     JOIN coupon_policies p ON p.id = c.policy_id \
     LEFT JOIN order_stacks k ON k.order_id = $4";

/// [`QUOTE_READ`] with its binds.
fn quote_read<'a>(user: UserId, now: DateTime<Utc>, order: Option<&'a ExternalRef>) -> Prepared<'a> {
    Prepared::new(QUOTE_READ)
        .bind::<BigInt, _>(user.get())
        .bind::<Timestamptz, _>(now)
        .bind::<BigInt, _>(i64::from(QUOTE_LIMIT))
        .bind::<Nullable<Text>, _>(order.map(ExternalRef::as_str))
}

/// A policy of the quote's coupons, those coupons, and the order's stack (the same on every row).
#[derive(QueryableByName)]
struct QuotedRow {
    #[diesel(embed)]
    policy: PolicyRow,
    #[diesel(sql_type = Array<BigInt>)]
    ids: Vec<i64>,
    #[diesel(sql_type = Timestamptz)]
    earliest_expiry: DateTime<Utc>,
    #[diesel(sql_type = Nullable<SmallInt>)]
    order_exclusive: Option<i16>,
    #[diesel(sql_type = Nullable<SmallInt>)]
    order_stackable: Option<i16>,
}

impl QuoteStore for PgWalletStore {
    fn quote_view<'a>(
        &'a self,
        user: UserId,
        order: Option<&'a ExternalRef>,
        now: DateTime<Utc>,
    ) -> PortFuture<'a, Result<QuoteView, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get_local().await.map_err(from_pool)?;
            let rows: Vec<QuotedRow> =
                quote_read(user, now, order).load(&mut conn).await.map_err(from_diesel)?;
            let mut order = OrderStack::default();
            let mut wallet = Vec::with_capacity(rows.len());
            for row in rows {
                // The order's stack is the same on every row.
                if let (Some(exclusive), Some(stackable)) = (row.order_exclusive, row.order_stackable) {
                    order = counted(exclusive, stackable);
                }
                let budget = row.policy.budget();
                let policy = Policy::try_from(row.policy)?;
                let coupons = row
                    .ids
                    .into_iter()
                    .map(|id| CouponId::new(id).ok_or_else(|| corrupt("coupon_issues", format!("id {id}"))))
                    .collect::<Result<_, StoreError>>()?;
                wallet.push(PolicyCoupons { policy, budget, coupons, earliest_expiry: row.earliest_expiry });
            }
            Ok(QuoteView { wallet, order })
        })
    }
}

impl WalletStore for PgWalletStore {
    fn coupon(&self, id: CouponId) -> PortFuture<'_, Result<Option<(IssuedCoupon, Policy)>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get_local().await.map_err(from_pool)?;
            let row: Option<(CouponRow, PolicyRow)> = c::table
                .inner_join(p::table)
                .filter(c::id.eq(id.get()))
                .select((CouponRow::as_select(), PolicyRow::as_select()))
                .first(&mut conn)
                .await
                .optional()
                .map_err(from_diesel)?;
            row.map(pair).transpose()
        })
    }

    fn catalogue(
        &self,
        user: UserId,
        before: Option<PolicyId>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> PortFuture<'_, Result<CataloguePage, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get_local().await.map_err(from_pool)?;
            let mut query = p::table
                .filter(p::is_active.eq(true))
                .filter(
                    p::distribution_type
                        .eq_any([DistributionType::Download.as_str(), DistributionType::FirstCome.as_str()]),
                )
                .filter(p::valid_from.le(now))
                .filter(p::valid_until.gt(now))
                .into_boxed();
            if let Some(before) = before {
                query = query.filter(p::id.lt(before.get()));
            }
            let rows: Vec<PolicyRow> = query
                .order(p::id.desc())
                .limit(i64::from(limit) + 1)
                .select(PolicyRow::as_select())
                .load(&mut conn)
                .await
                .map_err(from_diesel)?;
            let (rows, has_more) = one_page(rows, limit);
            let policies = rows.into_iter().map(Policy::try_from).collect::<Result<Vec<_>, _>>()?;
            // What the user holds of them, through the user's index.
            let ids: Vec<i64> = policies.iter().map(|policy| policy.id.get()).collect();
            let held: HashMap<i64, i64> = c::table
                .filter(c::user_id.eq(user.get()))
                .filter(c::policy_id.eq_any(&ids))
                .filter(c::status.ne("CANCELLED"))
                .group_by(c::policy_id)
                .select((c::policy_id, diesel::dsl::count_star()))
                .load::<(i64, i64)>(&mut conn)
                .await
                .map_err(from_diesel)?
                .into_iter()
                .collect();
            let next_cursor = if has_more { policies.last().map(|policy| policy.id) } else { None };
            let entries = policies
                .into_iter()
                .map(|policy| CatalogueEntry {
                    held: u32::try_from(held.get(&policy.id.get()).copied().unwrap_or(0)).unwrap_or(u32::MAX),
                    policy,
                })
                .collect();
            Ok(CataloguePage { entries, next_cursor, has_more })
        })
    }

    fn page(
        &self,
        user: UserId,
        filter: WalletFilter,
        before: Option<CouponId>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> PortFuture<'_, Result<WalletPage, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get_local().await.map_err(from_pool)?;
            let rows: Vec<(CouponRow, PolicyRow)> =
                page_query(user, filter, before, limit, now).load(&mut conn).await.map_err(from_diesel)?;
            let (rows, has_more) = one_page(rows, limit);
            let coupons = rows.into_iter().map(pair).collect::<Result<Vec<_>, _>>()?;
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
            let mut conn = self.pool.get_local().await.map_err(from_pool)?;
            let rows: Vec<(CouponRow, PolicyRow)> =
                expiring_query(user, now, until, limit).load(&mut conn).await.map_err(from_diesel)?;
            rows.into_iter().map(pair).collect()
        })
    }

    fn summary(&self, user: UserId, now: DateTime<Utc>) -> PortFuture<'_, Result<WalletSummary, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get_local().await.map_err(from_pool)?;
            let s: Summary = summary_query(user, now).get_result(&mut conn).await.map_err(from_diesel)?;
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
            let mut conn = self.pool.get_local().await.map_err(from_pool)?;
            let rows: Vec<DailyRow> = daily_query(first, last).load(&mut conn).await.map_err(from_diesel)?;
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

#[cfg(test)]
mod tests {
    //! The wallet's queries, EXPLAINed on a table of a million coupons (100,000 users with ten
    //! each, 500 policies): every one of them reaches `coupon_issues` through a user index, never a scan of the
    //! table. `cargo test -p coupon-store-pg wallet -- --nocapture` prints the plan shapes that
    //! docs/ARCHITECTURE.md quotes.

    use chrono::Duration;
    use coupon_domain::clock::{Clock, SystemClock};
    use coupon_domain::id::{CouponId, UserId};
    use coupon_domain::reservation::ExternalRef;
    use coupon_domain::wallet::WalletFilter;
    use coupon_testkit::TestDatabase;
    use diesel_async::RunQueryDsl;
    use serde_json::Value;

    use crate::explain::{coupons_fixture, nodes, plan, shape};

    /// Asserts that no table but the policies (campaigns: hundreds, not millions) is scanned
    /// whole, and that the coupons are read through `indexes`.
    fn assert_uses(name: &str, explained: &Value, indexes: &[&str]) {
        let root = &explained[0]["Plan"];
        let text = shape(root);
        #[expect(clippy::print_stdout, reason = "the plans are this test's report, quoted by the docs")]
        {
            println!("{name}:\n{text}");
        }
        for node in nodes(root).into_iter().filter(|n| n["Node Type"] == "Seq Scan") {
            assert_eq!(node["Relation Name"], "coupon_policies", "{name} scans a growing table:\n{text}");
        }
        for node in nodes(root).into_iter().filter(|n| n.get("Index Name").is_some()) {
            let index = node["Index Name"].as_str().unwrap_or_default();
            if index.starts_with("idx_coupon_issues") || index.starts_with("coupon_issues") {
                assert!(indexes.contains(&index), "{name} reads coupons through {index}:\n{text}");
            }
        }
        assert!(indexes.iter().any(|i| text.contains(i)), "{name} uses none of {indexes:?}:\n{text}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn wallet_queries_use_the_user_indexes_on_a_million_coupons() {
        let db = TestDatabase::migrated().await;
        let mut conn = db.connect().await;
        let [policies, coupons] =
            coupons_fixture(500, 100_000, &["ISSUED", "ISSUED", "RESERVED", "USED", "EXPIRED"]);
        for sql in [
            policies.as_str(),
            coupons.as_str(),
            "INSERT INTO daily_statistics (stat_date, total_issued, total_used, total_reserved, total_expired, \
                 issue_by_hour, usage_by_hour) \
             SELECT d::date, 1, 1, 1, 1, '{}', '{}' FROM generate_series(now() - interval '30 years', now(), '1 day') d",
            // A live reservation of its own order for each RESERVED coupon, and the order's stack (the
            // quote's order read).
            "INSERT INTO coupon_reservations (reservation_id, coupon_id, user_id, order_id, order_amount, \
                 discount_amount, reserved_at, expires_at, order_exclusive) \
             SELECT reservation_id, id, user_id, 'O-' || id, 50000, 1000, now(), now() + interval '30 minutes', TRUE \
             FROM coupon_issues WHERE status = 'RESERVED'",
            "INSERT INTO order_stacks (order_id, exclusive, stackable, cap) \
             SELECT 'O-' || id, 1, 0, 5 FROM coupon_issues WHERE status = 'RESERVED'",
            "ANALYZE",
        ] {
            diesel::sql_query(sql).execute(&mut conn).await.expect("test data");
        }
        let user = UserId::new(42_424).expect("user");
        let now = SystemClock.now();
        let cursor = Some(CouponId::new(424_245).expect("cursor"));
        let user_indexes = ["idx_coupon_issues_user_status"];
        for filter in [
            WalletFilter::All,
            WalletFilter::Available,
            WalletFilter::Unused,
            WalletFilter::Reserved,
            WalletFilter::Used,
            WalletFilter::Expired,
        ] {
            for before in [None, cursor] {
                let explained = plan(&mut conn, super::page_query(user, filter, before, 20, now)).await;
                assert_uses(&format!("page {filter:?}, cursor {before:?}"), &explained, &user_indexes);
            }
        }
        let explained = plan(&mut conn, super::expiring_query(user, now, now + Duration::days(7), 20)).await;
        assert_uses("expiring", &explained, &user_indexes);
        let explained = plan(&mut conn, super::summary_query(user, now)).await;
        assert_uses("statistics", &explained, &user_indexes);
        let order = ExternalRef::parse("O-424245", ExternalRef::ORDER_MAX).expect("order");
        let explained = plan(&mut conn, super::quote_read(user, now, Some(&order))).await;
        assert_uses("quote", &explained, &user_indexes);
        let text = explained.to_string();
        assert!(text.contains("order_stacks_pkey"), "the order's stack is read by its key: {text}");
        let today = now.date_naive();
        let explained = plan(&mut conn, super::daily_query(today - Duration::days(30), today)).await;
        assert_uses("daily statistics", &explained, &["daily_statistics_pkey"]);
    }
}
