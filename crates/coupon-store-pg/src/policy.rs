//! `PolicyStore` on PostgreSQL.

use chrono::{DateTime, Utc};
use coupon_domain::id::PolicyId;
use coupon_domain::idempotency::Receipt;
use coupon_domain::money::Money;
use coupon_domain::policy::{
    CapChange, CouponCode, CreatePolicyError, NewPolicy, Policy, PolicyStatistics, SavePolicyError,
    SetCapError, UniqueCode,
};
use coupon_domain::policy_store::PolicyStore;
use coupon_domain::port::{PortFuture, StoreError};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::QueryFragment;
use diesel::sql_types::{BigInt, Integer, Nullable, Numeric, Timestamptz};
use diesel_async::methods::LoadQuery;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;

use crate::error::{Abort, corrupt, from_diesel, from_pool, violated_constraint};
use crate::idempotency::keyed;
use crate::pool::PgPool;
use crate::reservation::settled;
use crate::row::{NewPolicyRow, PolicyRow, to_i32};
use crate::schema::coupon_policies::dsl as p;

/// The answer of one write that meets no concurrent change it could retry after.
pub(crate) fn once<T, E: From<StoreError>>(outcome: Result<T, Abort<E>>) -> Result<T, E> {
    settled(outcome).unwrap_or_else(|| {
        Err(StoreError::Unexpected(anyhow::anyhow!("a concurrent write conflicted")).into())
    })
}

async fn exists(conn: &mut AsyncPgConnection, id: PolicyId) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(p::coupon_policies.filter(p::id.eq(id.get())))).get_result(conn).await
}

/// Policies in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgPolicyStore {
    pool: PgPool,
}

impl PgPolicyStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    async fn load(&self, id: PolicyId) -> Result<Option<Policy>, StoreError> {
        self.first(p::coupon_policies.filter(p::id.eq(id.get())).into_boxed()).await
    }

    /// The policy the query selects, if any.
    async fn first(
        &self,
        query: crate::schema::coupon_policies::BoxedQuery<'_, Pg>,
    ) -> Result<Option<Policy>, StoreError> {
        let mut conn = self.pool.get().await.map_err(from_pool)?;
        let row =
            query.select(PolicyRow::as_select()).first(&mut conn).await.optional().map_err(from_diesel)?;
        row.map(Policy::try_from).transpose()
    }
}

/// A policy's coupons counted by status, with its savings and latest dates.
#[derive(QueryableByName)]
pub(crate) struct Counts {
    #[diesel(sql_type = BigInt)]
    issued: i64,
    #[diesel(sql_type = BigInt)]
    reserved: i64,
    #[diesel(sql_type = BigInt)]
    used: i64,
    #[diesel(sql_type = BigInt)]
    expired: i64,
    #[diesel(sql_type = BigInt)]
    cancelled: i64,
    #[diesel(sql_type = Numeric)]
    total_discount: Decimal,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_issued_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_used_at: Option<DateTime<Utc>>,
}

/// [`Counts`] of policy `id` at `now`: its coupons but the cancelled ones through the per-user
/// slot index (led by `policy_id`, it holds every coupon not cancelled), the cancelled ones through
/// `idx_coupon_issues_policy_cancelled`. Date-expired ISSUED coupons count as expired before the
/// job flips them (SPEC §4.2).
pub(crate) fn statistics_query<'a>(
    id: PolicyId,
    now: DateTime<Utc>,
) -> impl LoadQuery<'a, AsyncPgConnection, Counts> + QueryFragment<Pg> + Send + 'a {
    diesel::sql_query(
        "SELECT count(*) AS issued, \
           count(*) FILTER (WHERE status = 'RESERVED') AS reserved, \
           count(*) FILTER (WHERE status = 'USED') AS used, \
           count(*) FILTER (WHERE status = 'EXPIRED' OR (status = 'ISSUED' AND expires_at < $2)) AS expired, \
           count(*) FILTER (WHERE status = 'CANCELLED') AS cancelled, \
           coalesce(sum(discount_amount) FILTER (WHERE status = 'USED'), 0) AS total_discount, \
           max(issued_at) AS last_issued_at, \
           max(used_at) AS last_used_at \
         FROM (SELECT status, expires_at, discount_amount, issued_at, used_at FROM coupon_issues \
               WHERE policy_id = $1 AND status <> 'CANCELLED' \
               UNION ALL \
               SELECT status, expires_at, discount_amount, issued_at, used_at FROM coupon_issues \
               WHERE policy_id = $1 AND status = 'CANCELLED') c",
    )
    .bind::<BigInt, _>(id.get())
    .bind::<Timestamptz, _>(now)
}

impl PolicyStore for PgPolicyStore {
    fn create<'a>(
        &'a self,
        new: NewPolicy,
        now: DateTime<Utc>,
        receipt: Option<&'a Receipt>,
    ) -> PortFuture<'a, Result<Policy, CreatePolicyError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            let row = NewPolicyRow {
                coupon_name: &new.name,
                coupon_code: new.code.as_ref().map(CouponCode::as_str),
                description: new.description.as_deref(),
                discount_type: new.discount.discount_type().as_str(),
                discount_value: new.discount.value(),
                minimum_order_amount: Some(new.discount.minimum_order_amount().amount()),
                max_discount_amount: new.discount.max_discount_amount().map(Money::amount),
                distribution_type: new.distribution.as_str(),
                max_issue_count: new.max_issue_count.map(to_i32),
                max_issue_per_user: i32::from(new.max_issue_per_user),
                valid_days: to_i32(new.valid_days),
                valid_from: new.window.from(),
                valid_until: new.window.until(),
                is_active: new.is_active,
                code_mode: new.code_mode.as_str(),
                stackable: new.stackable,
                budget_amount: new.budget_amount.map(Money::amount),
                created_at: now,
                updated_at: now,
            };
            once(
                keyed(&mut conn, receipt, async |conn| {
                    // A shared code must not be a unique code already generated (SPEC §11.6: codes
                    // are unique across policies; a generation job skips the shared ones).
                    if let Some(code) = row.coupon_code {
                        use crate::schema::coupon_codes as k;
                        let taken: bool =
                            diesel::select(diesel::dsl::exists(k::table.find(code))).get_result(conn).await?;
                        if taken {
                            return Err(Abort::Refused(CreatePolicyError::DuplicateCode));
                        }
                    }
                    let inserted = diesel::insert_into(p::coupon_policies)
                        .values(&row)
                        .returning(PolicyRow::as_returning())
                        .get_result(conn)
                        .await;
                    match inserted {
                        Ok(row) => Policy::try_from(row).map_err(|e| Abort::Refused(e.into())),
                        Err(e) if violated_constraint(&e) == Some("uq_coupon_policies_code") => {
                            Err(Abort::Refused(CreatePolicyError::DuplicateCode))
                        }
                        Err(e) => Err(Abort::Db(e)),
                    }
                })
                .await,
            )
        })
    }

    fn get(&self, id: PolicyId) -> PortFuture<'_, Result<Option<Policy>, StoreError>> {
        Box::pin(self.load(id))
    }

    fn find_by_code<'a>(
        &'a self,
        code: &'a CouponCode,
    ) -> PortFuture<'a, Result<Option<Policy>, StoreError>> {
        Box::pin(self.first(p::coupon_policies.filter(p::coupon_code.eq(code.as_str())).into_boxed()))
    }

    fn find_unique_code<'a>(
        &'a self,
        code: &'a CouponCode,
    ) -> PortFuture<'a, Result<Option<UniqueCode>, StoreError>> {
        Box::pin(async move {
            use crate::schema::coupon_codes as k;
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            let row: Option<(i64, String)> = k::table
                .find(code.as_str())
                .select((k::policy_id, k::status))
                .first(&mut conn)
                .await
                .optional()
                .map_err(from_diesel)?;
            row.map(|(policy, status)| {
                let policy = PolicyId::new(policy).ok_or_else(|| corrupt("coupon_codes", code.as_str()))?;
                Ok(UniqueCode { code: code.clone(), policy, redeemed: status == "REDEEMED" })
            })
            .transpose()
        })
    }

    fn list(&self, after: Option<PolicyId>, limit: u32) -> PortFuture<'_, Result<Vec<Policy>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            let rows = p::coupon_policies
                .filter(p::id.gt(after.map_or(0, PolicyId::get)))
                .order(p::id.asc())
                .limit(i64::from(limit))
                .select(PolicyRow::as_select())
                .load(&mut conn)
                .await
                .map_err(from_diesel)?;
            rows.into_iter().map(Policy::try_from).collect()
        })
    }

    fn save<'a>(
        &'a self,
        policy: &'a Policy,
        now: DateTime<Utc>,
        receipt: Option<&'a Receipt>,
    ) -> PortFuture<'a, Result<Policy, SavePolicyError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            once(
                keyed(&mut conn, receipt, async |conn| {
                    // Optimistic lock on `version`; the issue counter is not written, so issuing
                    // running meanwhile neither conflicts with nor is lost by an admin change.
                    let row = diesel::update(
                        p::coupon_policies
                            .filter(p::id.eq(policy.id.get()))
                            .filter(p::version.eq(policy.version)),
                    )
                    .set((
                        p::coupon_name.eq(&policy.name),
                        p::description.eq(policy.description.as_deref()),
                        p::max_issue_count.eq(policy.max_issue_count.map(to_i32)),
                        p::valid_until.eq(policy.window.until()),
                        p::is_active.eq(policy.is_active),
                        p::budget_amount.eq(policy.budget_amount.map(Money::amount)),
                        p::version.eq(p::version + 1),
                        p::updated_at.eq(now),
                    ))
                    .returning(PolicyRow::as_returning())
                    .get_result(conn)
                    .await
                    .optional();
                    match row {
                        Ok(Some(row)) => Policy::try_from(row).map_err(|e| Abort::Refused(e.into())),
                        Ok(None) if exists(conn, policy.id).await? => {
                            Err(Abort::Refused(SavePolicyError::Conflict))
                        }
                        Ok(None) => Err(Abort::Refused(SavePolicyError::NotFound)),
                        // A concurrent issue raised the count above a cap this change would set.
                        Err(e) if violated_constraint(&e) == Some("chk_policy_stock") => {
                            Err(Abort::Refused(SavePolicyError::Conflict))
                        }
                        Err(e) => Err(Abort::Db(e)),
                    }
                })
                .await,
            )
        })
    }

    fn set_max_issue_count<'a>(
        &'a self,
        id: PolicyId,
        cap: u32,
        now: DateTime<Utc>,
        receipt: Option<&'a Receipt>,
    ) -> PortFuture<'a, Result<CapChange, SetCapError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            once(keyed(&mut conn, receipt, async |conn| {
                // One statement: the row lock makes the check against the issued count and the
                // write atomic with respect to concurrent issuing. `previous` reads the
                // pre-update row.
                #[derive(QueryableByName)]
                struct Changed {
                    #[diesel(sql_type = Nullable<Integer>)]
                    previous: Option<i32>,
                    #[diesel(sql_type = BigInt)]
                    id: i64,
                }
                let changed: Option<Changed> = diesel::sql_query(
                    "UPDATE coupon_policies AS p SET max_issue_count = $2, version = p.version + 1, updated_at = $3 \
                     FROM (SELECT id, max_issue_count FROM coupon_policies WHERE id = $1 FOR UPDATE) AS old \
                     WHERE p.id = old.id AND p.current_issue_count <= $2 \
                     RETURNING old.max_issue_count AS previous, p.id",
                )
                .bind::<BigInt, _>(id.get())
                .bind::<Integer, _>(to_i32(cap))
                .bind::<Timestamptz, _>(now)
                .get_result(conn)
                .await
                .optional()?;
                let row = p::coupon_policies
                    .filter(p::id.eq(id.get()))
                    .select(PolicyRow::as_select())
                    .first(conn)
                    .await
                    .optional()?;
                let policy = row
                    .map(Policy::try_from)
                    .transpose()
                    .map_err(|e| Abort::Refused(e.into()))?
                    .ok_or(Abort::Refused(SetCapError::NotFound))?;
                match changed {
                    Some(c) if c.id == id.get() => {
                        Ok(CapChange { previous: c.previous.and_then(|v| u32::try_from(v).ok()), policy })
                    }
                    _ => Err(Abort::Refused(SetCapError::BelowIssued { issued: policy.current_issue_count })),
                }
            })
            .await)
        })
    }

    fn statistics(
        &self,
        id: PolicyId,
        now: DateTime<Utc>,
    ) -> PortFuture<'_, Result<Option<PolicyStatistics>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            let row: Option<PolicyRow> = p::coupon_policies
                .find(id.get())
                .select(PolicyRow::as_select())
                .first(&mut conn)
                .await
                .optional()
                .map_err(from_diesel)?;
            let Some(row) = row else {
                return Ok(None);
            };
            let policy = Policy::try_from(row.clone())?;
            let c: Counts = statistics_query(id, now).get_result(&mut conn).await.map_err(from_diesel)?;
            let count = |n: i64| u64::try_from(n).unwrap_or(0);
            Ok(Some(PolicyStatistics {
                policy_id: id,
                max_issue_count: policy.max_issue_count,
                issued: count(c.issued),
                reserved: count(c.reserved),
                used: count(c.used),
                expired: count(c.expired),
                cancelled: count(c.cancelled),
                remaining: policy.remaining().map(u64::from),
                total_discount: Money::new(c.total_discount),
                last_issued_at: c.last_issued_at,
                last_used_at: c.last_used_at,
                budget: row.budget(),
            }))
        })
    }
}
