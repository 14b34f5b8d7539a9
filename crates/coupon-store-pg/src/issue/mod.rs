//! `CouponStore` on PostgreSQL: the issuing transaction.
//!
//! Policies with a per-user limit of one are issued in batches ([`crate::group_commit`]); the
//! per-request transaction below serves higher limits.
//!
//! Order of statements matters for throughput. Every issuer of a policy queues on the policy
//! row's lock, so the counter update comes **last** and the lock is held only from it to commit.
//! The user's slot and the outbox row are written first. A refused counter update rolls all of
//! it back.

use std::sync::Arc;

use coupon_domain::coupon::IssuedCoupon;
use coupon_domain::event::{CouponEvent, EventEncoder};
use coupon_domain::issue::{CouponStore, IssueCommand, IssueError};
use coupon_domain::policy::CouponCode;
use coupon_domain::port::PortFuture;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::error::{Abort, from_diesel, from_pool};
use crate::idempotency::{issued_receipt, write_receipts};
mod courier;
mod group_commit;
mod refusal;

use crate::outbox;
use crate::pool::PgPool;
use crate::row::CouponRow;
use group_commit::GroupCommit;
pub(crate) use refusal::refusal;

/// Issued coupons in PostgreSQL.
#[derive(Clone)]
pub struct PgCouponStore {
    pool: PgPool,
    encoder: Arc<dyn EventEncoder>,
    group: GroupCommit,
}

impl std::fmt::Debug for PgCouponStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCouponStore").field("pool", &self.pool).finish_non_exhaustive()
    }
}

impl PgCouponStore {
    /// # Errors
    /// The group commit's thread could not be started.
    pub fn new(pool: PgPool, encoder: Arc<dyn EventEncoder>) -> anyhow::Result<Self> {
        Ok(Self { group: GroupCommit::new(&pool, encoder.clone())?, pool, encoder })
    }

    /// One request, one transaction: for per-user limits above one, where the free slot is found
    /// by trying them in turn.
    async fn issue_alone(&self, command: IssueCommand<'_>) -> Result<IssuedCoupon, IssueError> {
        let mut conn = self.pool.get().await.map_err(from_pool)?;
        let encoder = &self.encoder;
        let outcome = conn
            .transaction::<_, Abort<IssueError>, _>(async |conn| {
                let coupon = take_slot(conn, &command).await?;
                if let Some(code) = command.code {
                    redeem(conn, code, &coupon).await?;
                }
                let event = encoder
                    .encode(&CouponEvent::Issued { coupon: &coupon, policy: command.policy }, command.context)
                    .map_err(|e| Abort::Refused(IssueError::Unexpected(e)))?;
                outbox::append(conn, &event).await?;
                count_issue(conn, &command).await?;
                let receipt = issued_receipt(command.context, &coupon, command.policy);
                write_receipts(conn, &Vec::from_iter(receipt)).await?;
                Ok(coupon)
            })
            .await;
        match outcome {
            Ok(coupon) => Ok(coupon),
            Err(Abort::Refused(e)) => Err(e),
            Err(Abort::Db(e)) => Err(from_diesel(e).into()),
            Err(Abort::Stale) => {
                Err(IssueError::Unexpected(anyhow::anyhow!("a concurrent write conflicted")))
            }
        }
    }
}

impl CouponStore for PgCouponStore {
    fn issue<'a>(&'a self, command: IssueCommand<'a>) -> PortFuture<'a, Result<IssuedCoupon, IssueError>> {
        Box::pin(async move {
            if command.policy.max_issue_per_user == 1 && command.code.is_none() {
                self.group.issue(command).await
            } else {
                self.issue_alone(command).await
            }
        })
    }
}

/// Marks the unique code redeemed by `coupon`, once: of concurrent redemptions of one code, the
/// first locks its row and the others find it redeemed when it commits.
async fn redeem(
    conn: &mut AsyncPgConnection,
    code: &CouponCode,
    coupon: &IssuedCoupon,
) -> Result<(), Abort<IssueError>> {
    let redeemed = diesel::sql_query(
        "UPDATE coupon_codes SET status = 'REDEEMED', coupon_id = $2, user_id = $3, redeemed_at = $4 \
         WHERE code = $1 AND policy_id = $5 AND status = 'AVAILABLE'",
    )
    .bind::<Text, _>(code.as_str())
    .bind::<BigInt, _>(coupon.id.get())
    .bind::<BigInt, _>(coupon.user_id.get())
    .bind::<Timestamptz, _>(coupon.issued_at)
    .bind::<BigInt, _>(coupon.policy_id.get())
    .execute(conn)
    .await?;
    if redeemed == 1 { Ok(()) } else { Err(Abort::Refused(IssueError::CodeRedeemed)) }
}

/// Inserts the coupon in the user's lowest free slot (1..=max_issue_per_user).
///
/// Concurrent requests of one user race for the same slot: the unique index makes the losers wait
/// for the winner's commit and then insert nothing, and the loop tries the next free slot with a
/// fresh snapshot (READ COMMITTED). When every slot is held the user is at the limit.
pub(crate) async fn take_slot(
    conn: &mut AsyncPgConnection,
    command: &IssueCommand<'_>,
) -> Result<IssuedCoupon, Abort<IssueError>> {
    let limit = i32::from(command.policy.max_issue_per_user);
    for _ in 0..=limit {
        let inserted: Option<CouponRow> = diesel::sql_query(
            "INSERT INTO coupon_issues (policy_id, user_id, user_slot, status, issued_at, expires_at) \
             SELECT $1, $2, s.slot::smallint, 'ISSUED', $3, $4 \
             FROM generate_series(1, $5) AS s(slot) \
             WHERE NOT EXISTS (SELECT 1 FROM coupon_issues c WHERE c.policy_id = $1 AND c.user_id = $2 \
                               AND c.user_slot = s.slot AND c.status <> 'CANCELLED') \
             ORDER BY s.slot LIMIT 1 \
             ON CONFLICT (policy_id, user_id, user_slot) WHERE status <> 'CANCELLED' DO NOTHING \
             RETURNING id, policy_id, user_id, status, reservation_id, order_id, discount_amount, \
                       issued_at, expires_at, reserved_at, used_at",
        )
        .bind::<BigInt, _>(command.policy.id.get())
        .bind::<BigInt, _>(command.user_id.get())
        .bind::<Timestamptz, _>(command.issued_at)
        .bind::<Timestamptz, _>(command.expires_at)
        .bind::<Integer, _>(limit)
        .get_result(conn)
        .await
        .optional()?;
        if let Some(row) = inserted {
            return IssuedCoupon::try_from(row).map_err(|e| Abort::Refused(e.into()));
        }
        if held_slots(conn, command).await? >= i64::from(limit) {
            return Err(Abort::Refused(IssueError::AlreadyIssued));
        }
    }
    Err(Abort::Refused(IssueError::Unexpected(anyhow::anyhow!(
        "no free slot found for user {} on policy {} after {} attempts",
        command.user_id,
        command.policy.id,
        limit + 1
    ))))
}

async fn held_slots(
    conn: &mut AsyncPgConnection,
    command: &IssueCommand<'_>,
) -> Result<i64, diesel::result::Error> {
    use crate::schema::coupon_issues::dsl as c;
    c::coupon_issues
        .filter(c::policy_id.eq(command.policy.id.get()))
        .filter(c::user_id.eq(command.user_id.get()))
        .filter(c::status.ne("CANCELLED"))
        .count()
        .get_result(conn)
        .await
}

/// Counts the coupon against the policy, only while the policy can issue through the channel at
/// the issue time and is under its cap. This conditional update, not the earlier checks, is what
/// decides: it runs under the row lock, after every concurrent issuer ahead of it committed.
pub(crate) async fn count_issue(
    conn: &mut AsyncPgConnection,
    command: &IssueCommand<'_>,
) -> Result<(), Abort<IssueError>> {
    let updated = diesel::sql_query(
        "UPDATE coupon_policies SET current_issue_count = current_issue_count + 1 \
         WHERE id = $1 AND is_active AND distribution_type = $2 AND valid_from <= $3 AND valid_until > $3 \
           AND (max_issue_count IS NULL OR current_issue_count < max_issue_count)",
    )
    .bind::<BigInt, _>(command.policy.id.get())
    .bind::<Text, _>(command.channel.as_str())
    .bind::<Timestamptz, _>(command.issued_at)
    .execute(conn)
    .await?;
    if updated == 1 {
        return Ok(());
    }
    Err(Abort::Refused(refusal(conn, command.channel, command.issued_at, command.policy).await?))
}
