//! `SupportStore` on PostgreSQL: an admin's revoke of one coupon.
//!
//! One read (the coupon with its `version`), the domain's `decide_revoke`, and one autocommit
//! statement: the coupon update guarded by that version, with its outbox row only if the update
//! matched. A version that moved writes nothing, and the revoke starts again from a fresh read.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use coupon_domain::coupon::IssuedCoupon;
use coupon_domain::event::{CouponEvent, EventContext, EventEncoder};
use coupon_domain::id::CouponId;
use coupon_domain::policy::Policy;
use coupon_domain::port::{PortFuture, StoreError};
use coupon_domain::support::{Revocation, RevokeDecision, RevokeError, Revoked, SupportStore, decide_revoke};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::{Abort, from_pool};
use crate::idempotency::keyed;
use crate::outbox;
use crate::pool::PgPool;
use crate::prepared::Prepared;
use crate::reservation::settle;
use crate::row::{CouponRow, PolicyRow};
use crate::schema::{coupon_issues as c, coupon_policies as p};

/// Support's actions in PostgreSQL.
#[derive(Clone)]
pub struct PgSupportStore {
    pool: PgPool,
    encoder: Arc<dyn EventEncoder>,
}

impl std::fmt::Debug for PgSupportStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSupportStore").field("pool", &self.pool).finish_non_exhaustive()
    }
}

impl PgSupportStore {
    pub fn new(pool: PgPool, encoder: Arc<dyn EventEncoder>) -> Self {
        Self { pool, encoder }
    }
}

impl SupportStore for PgSupportStore {
    fn revoke<'a>(
        &'a self,
        coupon: CouponId,
        revocation: &'a Revocation,
        now: DateTime<Utc>,
        context: &'a EventContext,
    ) -> PortFuture<'a, Result<Revoked, RevokeError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await.map_err(from_pool)?;
            settle!(
                "revoke",
                keyed(&mut conn, context.receipt.as_ref(), async |conn| {
                    revoke(conn, &*self.encoder, coupon, revocation, now, context).await
                })
            )
        })
    }
}

async fn revoke(
    conn: &mut AsyncPgConnection,
    encoder: &dyn EventEncoder,
    id: CouponId,
    revocation: &Revocation,
    now: DateTime<Utc>,
    context: &EventContext,
) -> Result<Revoked, Abort<RevokeError>> {
    let found: Option<(CouponRow, PolicyRow, i64)> = c::table
        .inner_join(p::table)
        .filter(c::id.eq(id.get()))
        .select((CouponRow::as_select(), PolicyRow::as_select(), c::version))
        .first(conn)
        .await
        .optional()?;
    let (row, policy, version) = found.ok_or(Abort::Refused(RevokeError::NotFound))?;
    let stored = |e: StoreError| Abort::Refused(RevokeError::Store(e));
    let coupon = IssuedCoupon::try_from(row).map_err(stored)?;
    let policy = Policy::try_from(policy).map_err(stored)?;
    if decide_revoke(&coupon, now).map_err(|e| Abort::Refused(e.into()))? == RevokeDecision::Replay {
        return Ok(Revoked { coupon, policy, replay: true });
    }
    let coupon = coupon.revoke();
    let event = CouponEvent::Revoked { coupon: &coupon, revocation, revoked_at: now };
    let event = encoder.encode(&event, context).map_err(|e| stored(StoreError::Unexpected(e)))?;
    let sql = format!(
        "WITH c AS (UPDATE coupon_issues SET status = $1, version = version + 1, updated_at = $2 \
                    WHERE id = $3 AND version = $4 AND status = 'ISSUED' RETURNING id), \
              o AS ({}) \
         SELECT count(*) AS changed FROM c",
        outbox::insert_sql(5, "EXISTS (SELECT 1 FROM c)")
    );
    let query = Prepared::new(&sql)
        .bind::<Text, _>(coupon.status.as_str())
        .bind::<Timestamptz, _>(now)
        .bind::<BigInt, _>(id.get())
        .bind::<BigInt, _>(version);
    let changed: Changed = outbox::bind_events(query, std::slice::from_ref(&event)).get_result(conn).await?;
    if changed.changed == 1 { Ok(Revoked { coupon, policy, replay: false }) } else { Err(Abort::Stale) }
}

#[derive(QueryableByName)]
struct Changed {
    #[diesel(sql_type = BigInt)]
    changed: i64,
}
