//! `ReservationStore` on PostgreSQL: reserve, confirm, release and order cancellation.
//!
//! Each operation is two statements and no explicit transaction. The first reads what the
//! domain's `decide_*` rule needs (coupon with its `version`, policy, reservation). The second
//! writes the decision as one data-modifying statement, which PostgreSQL runs and commits
//! atomically: the coupon update, guarded by the version read, the reservation change and the
//! outbox events, each part conditional on the one before. If anything changed in between (another
//! checkout, the timeout job), the guard matches no row, nothing is written, and the operation
//! starts again from a fresh read. Two round trips and one commit per operation, where BEGIN and
//! COMMIT would add two more; the write is a [`Prepared`] statement, planned once per connection.
//!
//! Every write that touches a reservation also bumps its coupon's `version`, in the same
//! statement, and touches the coupon first. So a version that did not move means the reservation
//! did not move either, and writers queue on the coupon row in one order (no deadlock between
//! two operations on one coupon). The statement still checks that the coupon and the reservation
//! changed together and fails as a whole (nothing committed) if they did not.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use coupon_domain::budget::Thresholds;
use coupon_domain::coupon::{ExpiryReason, IssuedCoupon};
use coupon_domain::event::{CouponEvent, EncodedEvent, EventContext, EventEncoder};
use coupon_domain::id::{CouponId, PolicyId, UserId};
use coupon_domain::port::{PortFuture, StoreError};
use coupon_domain::reservation::{
    CancelReason, ConfirmError, ConfirmRequest, Confirmed, ExternalRef, ReleaseDecision, ReleaseError,
    Released, ReleasedBy, Reservation, ReservationId, ReservationStore, ReserveCommand, ReserveError,
    Reserved, RestoreDecision, RestoreError, RestoreView, decide_release, decide_restore,
};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, SmallInt, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

mod attempts;
mod batch;
mod stack;

pub(crate) use attempts::{ATTEMPTS, gave_up, settle, settled};

use crate::error::{Abort, from_diesel, from_pool};
use crate::idempotency::keyed;
use crate::lanes::Lanes;
use crate::outbox;
use crate::own_thread::OwnThread;
use crate::pool::PgPool;
use crate::prepared::Prepared;
use crate::row::{CouponRow, PolicyRow, ReservationRow};
use crate::schema::{coupon_issues as c, coupon_policies as p, coupon_reservations as r};
pub(crate) use batch::{ConfirmWork, Work};
use batch::{Job, ReserveWork, drive};
use coupon_batch::Call;
pub(crate) use stack::{LEAVE, counted};

/// Lanes of reserves, and of confirmations, each drained by its own connection. One of each: a
/// round has costs of its own besides its rows' (statements, commit, wake-ups), and while a lane
/// writes one round the next one gathers, so one lane per kind makes the fewest and largest rounds
/// (two per kind gave 7 % fewer cycles/s than one, four 35 % fewer than two, and more CPU per
/// cycle; docs/BENCHMARKS.md).
const LANES: usize = 1;

/// Reservations in PostgreSQL.
#[derive(Clone)]
pub struct PgReservationStore {
    pool: PgPool,
    encoder: Arc<dyn EventEncoder>,
    reserves: Arc<Lanes<Job<ReserveWork>>>,
    confirms: Arc<Lanes<Job<ConfirmWork>>>,
}

impl std::fmt::Debug for PgReservationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReservationStore").field("pool", &self.pool).finish_non_exhaustive()
    }
}

fn encode<E: From<StoreError>>(
    encoder: &dyn EventEncoder,
    event: &CouponEvent<'_>,
    context: &EventContext,
) -> Result<EncodedEvent, Abort<E>> {
    encoder.encode(event, context).map_err(|e| Abort::Refused(StoreError::Unexpected(e).into()))
}

fn domain<T, E: From<StoreError>>(value: Result<T, StoreError>) -> Result<T, Abort<E>> {
    value.map_err(|e| Abort::Refused(e.into()))
}

#[derive(QueryableByName)]
struct Changed {
    #[diesel(sql_type = BigInt)]
    coupons: i64,
    #[diesel(sql_type = BigInt)]
    reservations: i64,
}

impl Changed {
    fn both<E>(self) -> Result<(), Abort<E>> {
        if self.coupons == 1 && self.reservations == 1 { Ok(()) } else { Err(Abort::Stale) }
    }
}

/// Gives the discount of the reservation `r` ended back to the budget of the policy of the coupon
/// `c` freed (`c` returns `policy_id`, `r` returns `discount_amount`): a CTE for the statements
/// that end a live reservation. Policies without a budget are not written.
const GIVE_BACK: &str = ", b AS (UPDATE coupon_policies SET budget_used = coupon_policies.budget_used - s.total \
    FROM (SELECT c.policy_id, r.discount_amount AS total FROM c, r) s \
    WHERE coupon_policies.id = s.policy_id AND coupon_policies.budget_amount IS NOT NULL \
    RETURNING coupon_policies.id)";

/// The statement's tail: the outbox insert at `$first..$first+4`, then the counts of what
/// changed. Coupon and reservation change together or the statement fails as a whole: the cast of
/// a non-number raises an error, so a broken invariant is never committed half-done (the branch
/// holds a subquery, so the planner cannot evaluate it ahead of time).
fn tail(first: usize) -> String {
    format!(
        ", o AS ({}) \
         SELECT (SELECT count(*) FROM c) AS coupons, \
                CASE WHEN (SELECT count(*) FROM c) = (SELECT count(*) FROM r) THEN (SELECT count(*) FROM r) \
                     ELSE ('coupon and reservation out of step: ' || (SELECT count(*) FROM r))::bigint \
                END AS reservations",
        outbox::insert_sql(first, "EXISTS (SELECT 1 FROM r)")
    )
}

async fn coupon_with_version(
    conn: &mut AsyncPgConnection,
    coupon: CouponId,
) -> Result<Option<(CouponRow, i64)>, diesel::result::Error> {
    c::table.find(coupon.get()).select((CouponRow::as_select(), c::version)).first(conn).await.optional()
}

async fn reservation_by_id(
    conn: &mut AsyncPgConnection,
    id: &ReservationId,
) -> Result<Option<(ReservationRow, CouponRow, i64)>, diesel::result::Error> {
    r::table
        .inner_join(c::table)
        .filter(r::reservation_id.eq(id.as_str()))
        .select((ReservationRow::as_select(), CouponRow::as_select(), c::version))
        .first(conn)
        .await
        .optional()
}

/// Frees the coupon held by `reservation` and ends the reservation with `status`.
async fn free<E: From<StoreError>>(
    conn: &mut AsyncPgConnection,
    reservation: &Reservation,
    version: i64,
    reason: CancelReason,
    now: DateTime<Utc>,
    event: &EncodedEvent,
) -> Result<(), Abort<E>> {
    let sql = format!(
        "WITH c AS (UPDATE coupon_issues SET status = 'ISSUED', reservation_id = NULL, reserved_at = NULL, \
                    order_id = NULL, discount_amount = NULL, \
                    version = version + 1, updated_at = $1 \
                    WHERE id = $2 AND version = $3 AND status = 'RESERVED' AND reservation_id = $4 \
                    RETURNING id, policy_id), \
              r AS (UPDATE coupon_reservations SET status = 'CANCELLED', cancelled_at = $1, cancel_reason = $5, \
                    updated_at = $1 WHERE reservation_id = $4 AND status = 'PENDING' AND EXISTS (SELECT 1 FROM c) \
                    RETURNING reservation_id, discount_amount, order_id, order_exclusive){GIVE_BACK}{LEAVE}{}",
        tail(6)
    );
    let query = Prepared::new(&sql)
        .bind::<Timestamptz, _>(now)
        .bind::<BigInt, _>(reservation.coupon_id.get())
        .bind::<BigInt, _>(version)
        .bind::<Text, _>(reservation.id.as_str().to_owned())
        .bind::<Text, _>(reason.as_str());
    let changed: Changed = outbox::bind_events(query, std::slice::from_ref(event)).get_result(conn).await?;
    changed.both()
}

/// Lanes on `thread` whose batches [`drive`] answers on `pool`'s connections.
fn lanes<W: Work>(
    thread: &Arc<OwnThread>,
    pool: &PgPool,
    encoder: &Arc<dyn EventEncoder>,
) -> Arc<Lanes<Job<W>>> {
    let (pool, encoder) = (pool.clone(), encoder.clone());
    Arc::new(Lanes::new(Some(thread.clone()), LANES, move |jobs| {
        let (pool, encoder) = (pool.clone(), encoder.clone());
        async move { drive(&pool, &*encoder, jobs).await }
    }))
}

/// Queues `work` on the lane of `key` and waits for its answer.
async fn ask<W: Work>(
    lanes: &Lanes<Job<W>>,
    key: impl std::hash::Hash,
    work: W,
) -> Result<W::Answer, W::Error> {
    let stopped = || StoreError::Unavailable("the checkout lanes have stopped (shutting down)".into()).into();
    let (job, answer) = Call::new(work);
    if lanes.submit(key, job).await.is_err() {
        return Err(stopped());
    }
    answer.await.unwrap_or_else(|_| Err(stopped()))
}

impl PgReservationStore {
    /// The store, with its lanes on a thread of their own (`own_thread`) and a pool of `pool`'s
    /// settings for their rounds, whose two connections (one per lane) it starts opening at once,
    /// so that the first rounds do not wait for them; the other operations use `pool`.
    ///
    /// # Errors
    /// The lanes' thread could not be started.
    pub fn new(pool: PgPool, encoder: Arc<dyn EventEncoder>) -> anyhow::Result<Self> {
        let thread = Arc::new(OwnThread::start("checkout-lanes")?);
        let rounds = pool.sibling()?;
        let opening = rounds.clone();
        // Held while opening; a connection that fails opens again at the lane's first round.
        let held = thread.clone();
        thread.runtime().spawn(async move {
            let _held = held;
            let _ = tokio::join!(opening.get(), opening.get());
        });
        let reserves = lanes(&thread, &rounds, &encoder);
        let confirms = lanes(&thread, &rounds, &encoder);
        Ok(Self { pool, encoder, reserves, confirms })
    }

    async fn connection(&self) -> Result<crate::pool::PgConn, StoreError> {
        self.pool.get().await.map_err(from_pool)
    }
}

impl ReservationStore for PgReservationStore {
    fn reserve<'a>(&'a self, command: ReserveCommand<'a>) -> PortFuture<'a, Result<Reserved, ReserveError>> {
        let work = ReserveWork {
            request: command.request.clone(),
            now: command.now,
            expires_at: command.expires_at,
            context: command.context.clone(),
            rules: command.rules.clone(),
        };
        Box::pin(ask(&self.reserves, command.request.coupon.get(), work))
    }

    fn confirm<'a>(
        &'a self,
        request: &'a ConfirmRequest,
        now: DateTime<Utc>,
        context: &'a EventContext,
    ) -> PortFuture<'a, Result<Confirmed, ConfirmError>> {
        let work = ConfirmWork { request: request.clone(), now, context: context.clone() };
        Box::pin(ask(&self.confirms, request.reservation_id.as_str(), work))
    }

    fn release<'a>(
        &'a self,
        id: &'a ReservationId,
        user: Option<UserId>,
        reason: CancelReason,
        now: DateTime<Utc>,
        context: &'a EventContext,
    ) -> PortFuture<'a, Result<Released, ReleaseError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let by = ReleasedBy::user(user);
            settle!(
                "release",
                keyed(&mut conn, context.receipt.as_ref(), async |conn| {
                    release(conn, &*self.encoder, id, by, reason, now, context).await
                })
            )
        })
    }

    fn announce_budget<'a>(
        &'a self,
        policy: PolicyId,
        thresholds: &'a Thresholds,
        context: &'a EventContext,
    ) -> PortFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            announce_budget(&mut conn, &*self.encoder, policy, thresholds, context).await.map_err(from_diesel)
        })
    }

    fn cancel_order<'a>(
        &'a self,
        coupon: CouponId,
        order: &'a ExternalRef,
        now: DateTime<Utc>,
        context: &'a EventContext,
    ) -> PortFuture<'a, Result<Released, RestoreError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            settle!(
                "order cancellation",
                cancel_order(&mut conn, &*self.encoder, coupon, order, now, context)
            )
        })
    }
}

/// Writes one `coupon.budget-threshold` event per threshold the domain says usage has newly
/// reached, with the highest as announced, in one statement guarded by what was announced when
/// read: of two concurrent announcers, one writes the events and the other nothing.
async fn announce_budget(
    conn: &mut AsyncPgConnection,
    encoder: &dyn EventEncoder,
    policy: PolicyId,
    thresholds: &Thresholds,
    context: &EventContext,
) -> QueryResult<()> {
    let row: Option<PolicyRow> =
        p::table.find(policy.get()).select(PolicyRow::as_select()).first(conn).await.optional()?;
    let Some((budget, announced)) = row.as_ref().and_then(|r| r.budget().map(|b| (b, r.budget_announced())))
    else {
        return Ok(());
    };
    let crossed = budget.crossed(thresholds.values(), announced);
    let Some(highest) = crossed.last().copied() else {
        return Ok(());
    };
    let events = crossed
        .iter()
        .map(|&threshold| {
            encoder.encode(&CouponEvent::BudgetThreshold { policy, threshold, budget }, context)
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(|e| diesel::result::Error::SerializationError(e.into()))?;
    let sql = format!(
        "WITH a AS (UPDATE coupon_policies SET budget_alerted = $2 WHERE id = $1 AND budget_alerted = $3 RETURNING id), \
              o AS ({}) SELECT count(*) AS n FROM a",
        outbox::insert_sql(4, "EXISTS (SELECT 1 FROM a)")
    );
    let query = Prepared::new(&sql)
        .bind::<BigInt, _>(policy.get())
        .bind::<SmallInt, _>(i16::from(highest))
        .bind::<SmallInt, _>(i16::from(announced));
    let announced: Count = outbox::bind_events(query, &events).get_result(conn).await?;
    if announced.n == 1 {
        tracing::info!(policy.id = %policy, thresholds = ?crossed, "budget thresholds reached");
        for threshold in &crossed {
            metrics::counter!("coupon_budget_thresholds_total", "threshold" => threshold.to_string())
                .increment(1);
        }
    }
    Ok(())
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

pub(crate) async fn release(
    conn: &mut AsyncPgConnection,
    encoder: &dyn EventEncoder,
    id: &ReservationId,
    by: ReleasedBy<'_>,
    reason: CancelReason,
    now: DateTime<Utc>,
    context: &EventContext,
) -> Result<Released, Abort<ReleaseError>> {
    let (row, _, version) =
        reservation_by_id(conn, id).await?.ok_or(Abort::Refused(ReleaseError::NotFound))?;
    let reservation = domain(Reservation::try_from(row))?;
    if decide_release(&reservation, by).map_err(Abort::Refused)? == ReleaseDecision::Replay {
        return Ok(Released { reservation, replay: true });
    }
    let cancelled = reservation.cancel(reason, now);
    let event = encode(encoder, &cancelled.event(), context)?;
    free(conn, &cancelled.reservation, version, reason, now, &event).await?;
    Ok(Released { reservation: cancelled.reservation, replay: false })
}

pub(crate) async fn cancel_order(
    conn: &mut AsyncPgConnection,
    encoder: &dyn EventEncoder,
    coupon_id: CouponId,
    order: &ExternalRef,
    now: DateTime<Utc>,
    context: &EventContext,
) -> Result<Released, Abort<RestoreError>> {
    let (coupon, version) =
        coupon_with_version(conn, coupon_id).await?.ok_or(Abort::Refused(RestoreError::CouponNotFound))?;
    let row: Option<ReservationRow> = r::table
        .filter(r::coupon_id.eq(coupon_id.get()))
        .filter(r::order_id.eq(order.as_str()))
        .order((r::reserved_at.desc(), r::created_at.desc()))
        .select(ReservationRow::as_select())
        .first(conn)
        .await
        .optional()?;
    let view = RestoreView {
        coupon: domain(IssuedCoupon::try_from(coupon))?,
        reservation: row.map(Reservation::try_from).transpose().map_err(|e| Abort::Refused(e.into()))?,
    };
    let decision = decide_restore(&view, now).map_err(Abort::Refused)?;
    let Some(reservation) = view.reservation else {
        return Err(Abort::Refused(RestoreError::NotFound));
    };
    let reason = CancelReason::OrderCancelled;
    let expired = match decision {
        RestoreDecision::Replay => return Ok(Released { reservation, replay: true }),
        RestoreDecision::Release => None,
        RestoreDecision::Restore { expired } => Some(expired),
    };
    let cancelled = reservation.cancel(reason, now);
    let cancelled_event = encode(encoder, &cancelled.event(), context)?;
    let reservation = cancelled.reservation;
    let Some(expired) = expired else {
        free(conn, &reservation, version, reason, now, &cancelled_event).await?;
        return Ok(Released { reservation, replay: false });
    };
    let mut events = vec![cancelled_event];
    let coupon = view.coupon.restored(expired);
    if expired {
        let expired = CouponEvent::Expired { coupon: &coupon, reason: ExpiryReason::ValidityPeriod };
        events.push(encode(encoder, &expired, context)?);
    }
    // The use is undone: the coupon forgets the order, the discount and the use time.
    let sql = format!(
        "WITH c AS (UPDATE coupon_issues SET status = $1, reservation_id = NULL, order_id = NULL, \
                    discount_amount = NULL, reserved_at = NULL, used_at = NULL, version = version + 1, updated_at = $2 \
                    WHERE id = $3 AND version = $4 AND status = 'USED' AND reservation_id = $5 \
                    RETURNING id, policy_id), \
              r AS (UPDATE coupon_reservations SET status = 'CANCELLED', cancelled_at = $2, cancel_reason = $6, \
                    updated_at = $2 WHERE reservation_id = $5 AND status = 'CONFIRMED' AND EXISTS (SELECT 1 FROM c) \
                    RETURNING reservation_id, discount_amount, order_id, order_exclusive){GIVE_BACK}{LEAVE}{}",
        tail(7)
    );
    let query = Prepared::new(&sql)
        .bind::<Text, _>(coupon.status.as_str())
        .bind::<Timestamptz, _>(now)
        .bind::<BigInt, _>(coupon_id.get())
        .bind::<BigInt, _>(version)
        .bind::<Text, _>(reservation.id.as_str().to_owned())
        .bind::<Text, _>(reason.as_str());
    let changed: Changed = outbox::bind_events(query, &events).get_result(conn).await?;
    changed.both()?;
    Ok(Released { reservation, replay: false })
}
