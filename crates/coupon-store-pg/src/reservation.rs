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
use coupon_domain::coupon::{CouponStatus, IssuedCoupon};
use coupon_domain::event::{CouponEvent, EncodedEvent, EventContext, EventEncoder};
use coupon_domain::id::{CouponId, UserId};
use coupon_domain::policy::Policy;
use coupon_domain::port::{PortFuture, StoreError};
use coupon_domain::reservation::{
    CancelReason, ConfirmDecision, ConfirmError, ConfirmRequest, ConfirmView, Confirmed, ExternalRef,
    ReleaseDecision, ReleaseError, Released, Reservation, ReservationId, ReservationStatus, ReservationStore,
    ReserveCommand, ReserveDecision, ReserveError, ReserveView, Reserved, RestoreDecision, RestoreError,
    RestoreView, decide_confirm, decide_release, decide_reserve, decide_restore,
};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Numeric, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::{from_diesel, from_pool};
use crate::outbox;
use crate::pool::PgPool;
use crate::prepared::Prepared;
use crate::row::{CouponRow, PolicyRow, ReservationRow};
use crate::schema::{coupon_issues as c, coupon_policies as p, coupon_reservations as r};

/// How many times an operation starts again after a concurrent change before giving up.
const ATTEMPTS: usize = 5;

/// Reservations in PostgreSQL.
#[derive(Clone)]
pub struct PgReservationStore {
    pool: PgPool,
    encoder: Arc<dyn EventEncoder>,
}

impl std::fmt::Debug for PgReservationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReservationStore").field("pool", &self.pool).finish_non_exhaustive()
    }
}

/// How one attempt ended.
enum Abort<E> {
    /// A business refusal: roll back and answer it.
    Refused(E),
    /// Something changed since the read: roll back and try again.
    Stale,
    Db(diesel::result::Error),
}

impl<E> From<diesel::result::Error> for Abort<E> {
    fn from(e: diesel::result::Error) -> Self {
        // A unique violation here means a concurrent operation won a race the read could not
        // see (the same reservation id inserted twice); the next attempt reads its result. Any
        // other constraint refusing a write is a bug, not a race: retrying cannot help.
        match e {
            diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _) => {
                Abort::Stale
            }
            e => Abort::Db(e),
        }
    }
}

/// Runs `$attempt` (a future of one read and one write, evaluated afresh on each round) until it
/// settles, at most [`ATTEMPTS`] times, and returns its answer from the enclosing function.
macro_rules! settle {
    ($what:literal, $attempt:expr) => {{
        for _ in 0..ATTEMPTS {
            if let Some(answer) = settle($attempt.await) {
                return answer;
            }
        }
        Err(gave_up($what))
    }};
}

/// `Some(answer)`, or `None` to try again.
fn settle<T, E: From<StoreError>>(outcome: Result<T, Abort<E>>) -> Option<Result<T, E>> {
    match outcome {
        Ok(value) => Some(Ok(value)),
        Err(Abort::Refused(e)) => Some(Err(e)),
        Err(Abort::Db(e)) => Some(Err(from_diesel(e).into())),
        Err(Abort::Stale) => None,
    }
}

fn gave_up<E: From<StoreError>>(what: &str) -> E {
    StoreError::Unexpected(anyhow::anyhow!("{what}: still changing after {ATTEMPTS} attempts")).into()
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

/// Whether the coupon was reserved again after `reservation`.
async fn superseded(
    conn: &mut AsyncPgConnection,
    reservation: &Reservation,
) -> Result<bool, diesel::result::Error> {
    diesel::select(diesel::dsl::exists(
        r::table
            .filter(r::coupon_id.eq(reservation.coupon_id.get()))
            .filter(r::reservation_id.ne(reservation.id.as_str()))
            .filter(r::reserved_at.ge(reservation.reserved_at)),
    ))
    .get_result(conn)
    .await
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
                    version = version + 1, updated_at = $1 \
                    WHERE id = $2 AND version = $3 AND status = 'RESERVED' AND reservation_id = $4 RETURNING id), \
              r AS (UPDATE coupon_reservations SET status = 'CANCELLED', cancelled_at = $1, cancel_reason = $5, \
                    updated_at = $1 WHERE reservation_id = $4 AND status = 'PENDING' AND EXISTS (SELECT 1 FROM c) \
                    RETURNING reservation_id){}",
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

impl PgReservationStore {
    pub fn new(pool: PgPool, encoder: Arc<dyn EventEncoder>) -> Self {
        Self { pool, encoder }
    }

    async fn connection(&self) -> Result<crate::pool::PgConn, StoreError> {
        self.pool.get().await.map_err(from_pool)
    }
}

impl ReservationStore for PgReservationStore {
    fn reserve<'a>(&'a self, command: ReserveCommand<'a>) -> PortFuture<'a, Result<Reserved, ReserveError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            settle!("reserve", reserve(&mut conn, &*self.encoder, &command))
        })
    }

    fn confirm<'a>(
        &'a self,
        request: &'a ConfirmRequest,
        now: DateTime<Utc>,
        context: &'a EventContext,
    ) -> PortFuture<'a, Result<Confirmed, ConfirmError>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            settle!("confirm", confirm(&mut conn, &*self.encoder, request, now, context))
        })
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
            settle!("release", release(&mut conn, &*self.encoder, id, user, reason, now, context))
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

async fn reserve(
    conn: &mut AsyncPgConnection,
    encoder: &dyn EventEncoder,
    command: &ReserveCommand<'_>,
) -> Result<Reserved, Abort<ReserveError>> {
    let request = command.request;
    let found: Option<(CouponRow, i64, PolicyRow, Option<ReservationRow>)> = c::table
        .inner_join(p::table)
        .left_join(r::table.on(r::reservation_id.eq(request.reservation_id.as_str())))
        .filter(c::id.eq(request.coupon.get()))
        .select((
            CouponRow::as_select(),
            c::version,
            PolicyRow::as_select(),
            Option::<ReservationRow>::as_select(),
        ))
        .first(conn)
        .await
        .optional()?;
    let (coupon, version, policy, existing) = found.ok_or(Abort::Refused(ReserveError::CouponNotFound))?;
    let view = ReserveView {
        coupon: domain(IssuedCoupon::try_from(coupon))?,
        policy: domain(Policy::try_from(policy))?,
        existing: existing.map(Reservation::try_from).transpose().map_err(|e| Abort::Refused(e.into()))?,
    };
    let discount = match decide_reserve(&view, request, command.now).map_err(Abort::Refused)? {
        ReserveDecision::Replay(reservation) => {
            return Ok(Reserved { reservation, coupon: view.coupon, policy: view.policy, replay: true });
        }
        ReserveDecision::Hold { discount } => discount,
    };
    let reservation = Reservation {
        id: request.reservation_id.clone(),
        coupon_id: request.coupon,
        user_id: request.user,
        order_id: request.order_id.clone(),
        order_amount: request.order_amount,
        discount,
        status: ReservationStatus::Pending,
        reserved_at: command.now,
        expires_at: command.expires_at,
        payment_id: None,
        confirmed_at: None,
        late_confirmation: false,
        cancelled_at: None,
        cancel_reason: None,
    };
    let event = encode(encoder, &CouponEvent::Reserved { reservation: &reservation }, command.context)?;
    let sql = format!(
        "WITH c AS (UPDATE coupon_issues SET status = 'RESERVED', reservation_id = $1, reserved_at = $2, \
                    version = version + 1, updated_at = $2 \
                    WHERE id = $3 AND version = $4 AND status = 'ISSUED' RETURNING id, user_id), \
              r AS (INSERT INTO coupon_reservations (reservation_id, coupon_id, user_id, order_id, order_amount, \
                    discount_amount, status, reserved_at, expires_at, created_at, updated_at) \
                    SELECT $1, c.id, c.user_id, $5, $6, $7, 'PENDING', $2, $8, $2, $2 FROM c \
                    RETURNING reservation_id){}",
        tail(9)
    );
    let query = Prepared::new(&sql)
        .bind::<Text, _>(reservation.id.as_str().to_owned())
        .bind::<Timestamptz, _>(command.now)
        .bind::<BigInt, _>(reservation.coupon_id.get())
        .bind::<BigInt, _>(version)
        .bind::<Nullable<Text>, _>(reservation.order_id.as_ref().map(|o| o.as_str().to_owned()))
        .bind::<Numeric, _>(reservation.order_amount.amount())
        .bind::<Numeric, _>(reservation.discount.amount())
        .bind::<Timestamptz, _>(command.expires_at);
    let changed: Changed = outbox::bind_events(query, std::slice::from_ref(&event)).get_result(conn).await?;
    changed.both()?;
    let mut coupon = view.coupon;
    coupon.status = CouponStatus::Reserved;
    coupon.reservation_id = Some(reservation.id.as_str().to_owned());
    coupon.reserved_at = Some(command.now);
    Ok(Reserved { reservation, coupon, policy: view.policy, replay: false })
}

async fn confirm(
    conn: &mut AsyncPgConnection,
    encoder: &dyn EventEncoder,
    request: &ConfirmRequest,
    now: DateTime<Utc>,
    context: &EventContext,
) -> Result<Confirmed, Abort<ConfirmError>> {
    let (row, coupon, version) = reservation_by_id(conn, &request.reservation_id)
        .await?
        .ok_or(Abort::Refused(ConfirmError::NotFound))?;
    let reservation = domain(Reservation::try_from(row))?;
    let superseded =
        reservation.status == ReservationStatus::Expired && superseded(conn, &reservation).await?;
    let view = ConfirmView { reservation, coupon: domain(IssuedCoupon::try_from(coupon))?, superseded };
    let late = match decide_confirm(&view, request, now).map_err(Abort::Refused)? {
        ConfirmDecision::Replay => return Ok(Confirmed { reservation: view.reservation, replay: true }),
        ConfirmDecision::Use { late } => late,
    };
    let expected = view.reservation.status;
    let mut reservation = view.reservation;
    reservation.status = ReservationStatus::Confirmed;
    reservation.confirmed_at = Some(now);
    reservation.payment_id.clone_from(&request.payment_id);
    reservation.order_id = Some(request.order_id.clone());
    reservation.late_confirmation = late;
    let event = encode(encoder, &CouponEvent::Used { reservation: &reservation, used_at: now }, context)?;
    // A late confirmation takes a coupon that is free again (ISSUED); a timely one, the coupon
    // its reservation holds.
    let sql = format!(
        "WITH c AS (UPDATE coupon_issues SET status = 'USED', reservation_id = $1, order_id = $2, \
                    discount_amount = $3, used_at = $4, reserved_at = COALESCE(reserved_at, $5), \
                    version = version + 1, updated_at = $4 \
                    WHERE id = $6 AND version = $7 AND ((status = 'RESERVED' AND reservation_id = $1) \
                          OR (status = 'ISSUED' AND reservation_id IS NULL AND $8)) RETURNING id), \
              r AS (UPDATE coupon_reservations SET status = 'CONFIRMED', confirmed_at = $4, payment_id = $9, \
                    order_id = $2, late_confirmation = $10, updated_at = $4 \
                    WHERE reservation_id = $1 AND status = $11 AND EXISTS (SELECT 1 FROM c) \
                    RETURNING reservation_id){}",
        tail(12)
    );
    let query = Prepared::new(&sql)
        .bind::<Text, _>(reservation.id.as_str().to_owned())
        .bind::<Text, _>(request.order_id.as_str().to_owned())
        .bind::<Numeric, _>(reservation.discount.amount())
        .bind::<Timestamptz, _>(now)
        .bind::<Timestamptz, _>(reservation.reserved_at)
        .bind::<BigInt, _>(reservation.coupon_id.get())
        .bind::<BigInt, _>(version)
        .bind::<Bool, _>(expected == ReservationStatus::Expired)
        .bind::<Nullable<Text>, _>(request.payment_id.as_ref().map(|p| p.as_str().to_owned()))
        .bind::<Bool, _>(late)
        .bind::<Text, _>(expected.as_str());
    let changed: Changed = outbox::bind_events(query, std::slice::from_ref(&event)).get_result(conn).await?;
    changed.both()?;
    if late {
        metrics::counter!("coupon_late_confirmations_total", "outcome" => "honoured").increment(1);
    }
    Ok(Confirmed { reservation, replay: false })
}

async fn release(
    conn: &mut AsyncPgConnection,
    encoder: &dyn EventEncoder,
    id: &ReservationId,
    user: Option<UserId>,
    reason: CancelReason,
    now: DateTime<Utc>,
    context: &EventContext,
) -> Result<Released, Abort<ReleaseError>> {
    let (row, _, version) =
        reservation_by_id(conn, id).await?.ok_or(Abort::Refused(ReleaseError::NotFound))?;
    let mut reservation = domain(Reservation::try_from(row))?;
    if decide_release(&reservation, user).map_err(Abort::Refused)? == ReleaseDecision::Replay {
        return Ok(Released { reservation, replay: true });
    }
    reservation.status = ReservationStatus::Cancelled;
    reservation.cancelled_at = Some(now);
    reservation.cancel_reason = Some(reason.as_str().to_owned());
    let event = encode(
        encoder,
        &CouponEvent::Cancelled { reservation: &reservation, reason, cancelled_at: now },
        context,
    )?;
    free(conn, &reservation, version, reason, now, &event).await?;
    Ok(Released { reservation, replay: false })
}

async fn cancel_order(
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
    let Some(mut reservation) = view.reservation else {
        return Err(Abort::Refused(RestoreError::NotFound));
    };
    let reason = CancelReason::OrderCancelled;
    let expired = match decision {
        RestoreDecision::Replay => return Ok(Released { reservation, replay: true }),
        RestoreDecision::Release => None,
        RestoreDecision::Restore { expired } => Some(expired),
    };
    reservation.status = ReservationStatus::Cancelled;
    reservation.cancelled_at = Some(now);
    reservation.cancel_reason = Some(reason.as_str().to_owned());
    let cancelled = encode(
        encoder,
        &CouponEvent::Cancelled { reservation: &reservation, reason, cancelled_at: now },
        context,
    )?;
    let Some(expired) = expired else {
        free(conn, &reservation, version, reason, now, &cancelled).await?;
        return Ok(Released { reservation, replay: false });
    };
    let mut events = vec![cancelled];
    let mut coupon = view.coupon;
    coupon.status = if expired { CouponStatus::Expired } else { CouponStatus::Issued };
    if expired {
        events.push(encode(encoder, &CouponEvent::Expired { coupon: &coupon }, context)?);
    }
    // The use is undone: the coupon forgets the order, the discount and the use time.
    let sql = format!(
        "WITH c AS (UPDATE coupon_issues SET status = $1, reservation_id = NULL, order_id = NULL, \
                    discount_amount = NULL, reserved_at = NULL, used_at = NULL, version = version + 1, updated_at = $2 \
                    WHERE id = $3 AND version = $4 AND status = 'USED' AND reservation_id = $5 RETURNING id), \
              r AS (UPDATE coupon_reservations SET status = 'CANCELLED', cancelled_at = $2, cancel_reason = $6, \
                    updated_at = $2 WHERE reservation_id = $5 AND status = 'CONFIRMED' AND EXISTS (SELECT 1 FROM c) \
                    RETURNING reservation_id){}",
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
