//! The hot half of checkout, batched: reserves and confirmations.
//!
//! Each goes through [`Lanes`]: the requests waiting in a lane are decided together in a
//! **round** of reads (sent together) and one write for all of them, where one request alone
//! costs a read and a write of its own. PostgreSQL's cost is mostly per statement and per commit,
//! so a round of fifty costs little more than a round of one.
//!
//! A round reads every coupon, policy and reservation it needs (`= ANY`), decides each request
//! with the domain's rule, and writes all decisions as one data-modifying statement: the coupon
//! updates guarded by the versions read, the reservation changes, and the outbox events of exactly
//! the requests whose coupon update matched (each event names its reservation). A request whose
//! coupon moved since the read joins the next round, which reads afresh (at most `ATTEMPTS`
//! rounds). Two requests for one coupon or one reservation id never share a round. If the write
//! fails as a whole (a reservation id inserted concurrently by another instance), the requests of
//! that round are redone one by one, so only the one at fault sees the conflict, on a fresh read.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use coupon_batch::Call;
use coupon_domain::budget::Budget;
use coupon_domain::coupon::IssuedCoupon;
use coupon_domain::event::{EncodedEvent, EventContext, EventEncoder};
use coupon_domain::money::Money;
use coupon_domain::policy::Policy;
use coupon_domain::port::StoreError;
use coupon_domain::reservation::{
    CheckoutRules, ConfirmDecision, ConfirmError, ConfirmRequest, ConfirmView, Confirmed, Reservation,
    ReservationStatus, ReserveDecision, ReserveError, ReserveRequest, ReserveView, Reserved, decide_confirm,
    decide_reserve,
};
use coupon_domain::stacking::{OrderStack, Rejoin, Share};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Numeric, SmallInt, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;

use super::attempts::{ATTEMPTS, gave_up};
use super::stack;
use crate::error::{corrupt, from_diesel, from_pool, lost_race};
use crate::idempotency::{receipt_for, write_receipts};
use crate::lanes::MAX_BATCH;
use crate::outbox;
use crate::pool::PgPool;
use crate::prepared::Prepared;
use crate::row::{CouponRow, PolicyRow, ReservationRow};
use crate::schema::{coupon_issues as c, coupon_policies as p, coupon_reservations as r};

/// A reserve to decide.
pub(crate) struct ReserveWork {
    pub(crate) request: ReserveRequest,
    pub(crate) now: DateTime<Utc>,
    pub(crate) expires_at: DateTime<Utc>,
    pub(crate) context: EventContext,
    pub(crate) rules: Arc<CheckoutRules>,
}

/// A confirmation to decide.
pub(crate) struct ConfirmWork {
    pub(crate) request: ConfirmRequest,
    pub(crate) now: DateTime<Utc>,
    pub(crate) context: EventContext,
}

/// Work waiting in a lane with the caller's reply channel.
pub(crate) type Job<W> = Call<W, Result<<W as Work>::Answer, <W as Work>::Error>>;

/// Answers a job. The caller may have gone (client disconnected); what was decided stands.
fn reply<W: Work>(job: Job<W>, answer: Result<W::Answer, W::Error>) {
    let _ = job.answer(answer);
}

/// Each request's answer after a round, or `None` when its coupon moved and it goes again.
type Outcomes<A, E> = Vec<Option<Result<A, E>>>;

/// A kind of request that is decided in rounds.
pub(crate) trait Work: Send + Sync + Sized + 'static {
    type Answer: Send + 'static;
    type Error: From<StoreError> + Send;
    const NAME: &'static str;
    /// Two requests sharing a key never share a round.
    fn keys(&self) -> [Option<String>; 3];
    fn context(&self) -> &EventContext;
    /// One round on `conn` (inside a caller's transaction, or on its own): each request's
    /// answer, or `None` when its coupon moved and it must go again.
    fn round<'a>(
        conn: &'a mut AsyncPgConnection,
        encoder: &'a dyn EventEncoder,
        works: &'a [&'a Self],
    ) -> impl Future<Output = QueryResult<Outcomes<Self::Answer, Self::Error>>> + Send + 'a;
}

/// Answers every job of a lane's batch.
pub(crate) async fn drive<W: Work>(pool: &PgPool, encoder: &dyn EventEncoder, jobs: Vec<Job<W>>) {
    metrics::histogram!("coupon_checkout_batch_size", "operation" => W::NAME).record(jobs.len() as f64);
    let mut conn = match pool.get().await {
        Ok(conn) => conn,
        Err(e) => {
            let message = from_pool(e).to_string();
            for job in jobs {
                reply(job, Err(StoreError::Unavailable(message.clone()).into()));
            }
            return;
        }
    };
    let mut todo: VecDeque<(Job<W>, usize)> = jobs.into_iter().map(|job| (job, 0)).collect();
    let mut one_by_one = false;
    while !todo.is_empty() {
        let (jobs, attempts): (Vec<Job<W>>, Vec<usize>) =
            take_round(&mut todo, one_by_one).into_iter().unzip();
        let mut again = Vec::new();
        let works: Vec<&W> = jobs.iter().map(|job| &job.item).collect();
        let outcome = if works.iter().any(|w| w.context().receipt.is_some()) {
            keyed_round(&mut conn, encoder, &works).await
        } else {
            W::round(&mut conn, encoder, &works).await
        };
        drop(works);
        match outcome {
            Ok(outcomes) => {
                for ((job, attempt), outcome) in jobs.into_iter().zip(attempts).zip(outcomes) {
                    match outcome {
                        Some(answer) => reply(job, answer),
                        None => again.push((job, attempt + 1)),
                    }
                }
            }
            Err(e) if jobs.len() > 1 => {
                tracing::debug!(error = %e, operation = W::NAME, "batched write failed; one by one");
                one_by_one = true;
                again.extend(jobs.into_iter().zip(attempts));
            }
            // Alone (a failed round of several goes one by one above): a race lost to another
            // writer (a reservation id, an order slot, a budget); a fresh read sees it.
            Err(e) if lost_race(&e) => {
                again.extend(jobs.into_iter().zip(attempts.into_iter().map(|a| a + 1)));
            }
            Err(e) => {
                let error = from_diesel(e);
                if let Some(job) = jobs.into_iter().next() {
                    reply(job, Err(error.into()));
                }
            }
        }
        for (job, attempt) in again.into_iter().rev() {
            if attempt >= ATTEMPTS {
                reply(job, Err(gave_up(W::NAME)));
            } else {
                todo.push_front((job, attempt));
            }
        }
    }
}

/// A round some of whose requests carry an idempotency key: the round and their answers commit
/// in one transaction.
async fn keyed_round<W: Work>(
    conn: &mut AsyncPgConnection,
    encoder: &dyn EventEncoder,
    works: &[&W],
) -> QueryResult<Outcomes<W::Answer, W::Error>> {
    conn.transaction(async |conn| {
        let outcomes = W::round(conn, encoder, works).await?;
        let receipts: Vec<_> = works
            .iter()
            .zip(&outcomes)
            .filter_map(|(work, outcome)| match outcome {
                Some(Ok(answer)) => receipt_for(work.context(), answer),
                _ => None,
            })
            .collect();
        write_receipts(conn, &receipts).await?;
        Ok(outcomes)
    })
    .await
}

/// The next round: requests in arrival order, skipping (for a later round) any that shares a key
/// with one already taken; a single request when going one by one.
fn take_round<W: Work>(todo: &mut VecDeque<(Job<W>, usize)>, one_by_one: bool) -> Vec<(Job<W>, usize)> {
    if one_by_one {
        return todo.pop_front().into_iter().collect();
    }
    let mut seen = HashSet::new();
    let mut round = Vec::new();
    let mut later = VecDeque::new();
    while let Some(item) = todo.pop_front() {
        let keys = item.0.item.keys();
        let clash = keys.iter().flatten().any(|k| seen.contains(k));
        if clash || round.len() == MAX_BATCH {
            later.push_back(item);
        } else {
            seen.extend(keys.into_iter().flatten());
            round.push(item);
        }
    }
    *todo = later;
    round
}

/// What a request will write, with its answer once written.
struct Write<A> {
    index: usize,
    answer: A,
    version: i64,
    event: EncodedEvent,
}

/// The rows the write changed (by reservation id). The statement fails as a whole, committing
/// nothing, if a coupon changed without its reservation (see `reservation::tail`).
#[derive(QueryableByName)]
struct Settled {
    #[diesel(sql_type = Array<Text>)]
    changed: Vec<String>,
    #[diesel(sql_type = BigInt)]
    #[expect(dead_code, reason = "read only to make the statement evaluate its check")]
    check: i64,
}

/// The statement's end: the events of the reservations in `r`, then the changed ids and the check.
fn settle_sql(first_event: usize) -> String {
    format!(
        ", o AS ({}) \
         SELECT COALESCE((SELECT array_agg(reservation_id) FROM r), '{{}}') AS changed, \
                CASE WHEN (SELECT count(*) FROM c) = (SELECT count(*) FROM r) THEN 0 \
                     ELSE ('coupon and reservation out of step: ' || (SELECT count(*) FROM r))::bigint \
                END AS \"check\"",
        outbox::insert_owned_sql(first_event, "SELECT reservation_id FROM r")
    )
}

fn owned_events<A>(writes: &[Write<A>], owner: impl Fn(&A) -> String) -> Vec<(String, EncodedEvent)> {
    writes.iter().map(|w| (owner(&w.answer), w.event.clone())).collect()
}

impl Work for ReserveWork {
    type Answer = Reserved;
    type Error = ReserveError;
    const NAME: &'static str = "reserve";

    fn keys(&self) -> [Option<String>; 3] {
        [
            Some(format!("c{}", self.request.coupon)),
            Some(format!("r{}", self.request.reservation_id.as_str())),
            self.request.order_id.as_ref().map(|order| format!("o{}", order.as_str())),
        ]
    }

    fn context(&self) -> &EventContext {
        &self.context
    }

    fn round<'a>(
        conn: &'a mut AsyncPgConnection,
        encoder: &'a dyn EventEncoder,
        works: &'a [&'a Self],
    ) -> impl Future<Output = QueryResult<Outcomes<Reserved, ReserveError>>> + Send + 'a {
        reserve_round(conn, encoder, works)
    }
}

async fn reserve_round(
    conn: &mut AsyncPgConnection,
    encoder: &dyn EventEncoder,
    jobs: &[&ReserveWork],
) -> QueryResult<Outcomes<Reserved, ReserveError>> {
    let ids: Vec<i64> = jobs.iter().map(|j| j.request.coupon.get()).collect();
    let rids: Vec<String> = jobs.iter().map(|j| j.request.reservation_id.as_str().to_owned()).collect();
    // The three reads go out together (pipelined on the one connection) and run one after the
    // other in PostgreSQL: one round trip instead of three.
    let (mut coupons_conn, mut existing_conn) = (&*conn, &*conn);
    let coupons_read = c::table
        .inner_join(p::table)
        .filter(c::id.eq_any(&ids))
        .select((CouponRow::as_select(), c::version, PolicyRow::as_select()))
        .load::<(CouponRow, i64, PolicyRow)>(&mut coupons_conn);
    let existing_read = r::table
        .filter(r::reservation_id.eq_any(&rids))
        .select(ReservationRow::as_select())
        .load::<ReservationRow>(&mut existing_conn);
    let (coupons, existing, orders) =
        tokio::try_join!(coupons_read, existing_read, order_stacks(&*conn, jobs))?;
    let coupons: HashMap<i64, (CouponRow, i64, PolicyRow)> =
        coupons.into_iter().map(|row| (row.0.id, row)).collect();
    let existing: HashMap<String, ReservationRow> =
        existing.into_iter().map(|row| (row.reservation_id.clone(), row)).collect();
    // Each policy's budget as read, less what the holds decided so far in this round take.
    let mut budgets: HashMap<i64, Budget> =
        coupons.values().filter_map(|(_, _, policy)| policy.budget().map(|b| (policy.id, b))).collect();
    let mut outcomes: Outcomes<Reserved, ReserveError> = Vec::with_capacity(jobs.len());
    let mut writes = Vec::new();
    let mut shares = Vec::new();
    let mut caps: Vec<i16> = Vec::new();
    for (index, job) in jobs.iter().enumerate() {
        let found = coupons.get(&job.request.coupon.get());
        let existing = existing.get(job.request.reservation_id.as_str());
        let order =
            job.request.order_id.as_ref().and_then(|o| orders.get(o.as_str())).copied().unwrap_or_default();
        let budget = found.and_then(|(_, _, policy)| budgets.get(&policy.id).copied());
        match plan_reserve(job, found, existing, budget, order, encoder) {
            Ok((Plan::Answer(answer), _)) => outcomes.push(Some(Ok(answer))),
            Ok((Plan::Write { answer, version, event }, hold)) => {
                if let Some(budget) = hold.budget {
                    budgets.insert(answer.policy.id.get(), budget);
                }
                outcomes.push(None);
                shares.push(stack::exclusive(hold.share));
                caps.push(i16::try_from(job.rules.max_per_order).unwrap_or(i16::MAX));
                writes.push(Write { index, answer, version, event });
            }
            Err(e) => outcomes.push(Some(Err(e))),
        }
    }
    if writes.is_empty() {
        return Ok(outcomes);
    }
    // `b` takes the held discounts from their policies' budgets and `k` adds the holds' shares to
    // their orders' stacks: exactly those of the coupons `c` changed, so the running sums and the
    // reservations never disagree; a sum past its budget, or a stack with no room left for a
    // share, fails its CHECK and the whole statement (a race lost, decided again on a fresh read).
    let sql = format!(
        "WITH x AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::numeric[], \
                                        $6::numeric[], $7::timestamptz[], $8::timestamptz[], $9::bool[], \
                                        $10::int2[]) \
                    AS x(id, version, rid, order_id, amount, discount, reserved_at, expires_at, exclusive, cap)), \
              c AS (UPDATE coupon_issues SET status = 'RESERVED', reservation_id = x.rid, reserved_at = x.reserved_at, \
                           order_id = x.order_id, discount_amount = x.discount, \
                           version = coupon_issues.version + 1, updated_at = x.reserved_at \
                    FROM x WHERE coupon_issues.id = x.id AND coupon_issues.version = x.version \
                      AND coupon_issues.status = 'ISSUED' \
                    RETURNING coupon_issues.id, coupon_issues.user_id, coupon_issues.policy_id, x.rid, x.order_id, \
                              x.amount, x.discount, x.reserved_at, x.expires_at, x.exclusive, x.cap), \
              b AS (UPDATE coupon_policies SET budget_used = coupon_policies.budget_used + s.total \
                    FROM (SELECT policy_id, sum(discount) AS total FROM c GROUP BY policy_id) s \
                    WHERE coupon_policies.id = s.policy_id AND coupon_policies.budget_amount IS NOT NULL \
                    RETURNING coupon_policies.id), \
              r AS (INSERT INTO coupon_reservations (reservation_id, coupon_id, user_id, order_id, order_amount, \
                           discount_amount, status, reserved_at, expires_at, created_at, updated_at, order_exclusive) \
                    SELECT rid, id, user_id, order_id, amount, discount, 'PENDING', reserved_at, expires_at, \
                           reserved_at, reserved_at, exclusive FROM c \
                    RETURNING reservation_id){}{}",
        stack::join_sql("SELECT order_id, exclusive, cap FROM c"),
        settle_sql(11)
    );
    let column =
        |f: fn(&Reservation) -> i64| writes.iter().map(|w| f(&w.answer.reservation)).collect::<Vec<_>>();
    let query = Prepared::new(&sql)
        .bind::<Array<BigInt>, _>(column(|r| r.coupon_id.get()))
        .bind::<Array<BigInt>, _>(writes.iter().map(|w| w.version).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            writes.iter().map(|w| w.answer.reservation.id.as_str().to_owned()).collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Text>>, _>(
            writes
                .iter()
                .map(|w| w.answer.reservation.order_id.as_ref().map(|o| o.as_str().to_owned()))
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Numeric>, _>(
            writes.iter().map(|w| w.answer.reservation.order_amount.amount()).collect::<Vec<_>>(),
        )
        .bind::<Array<Numeric>, _>(
            writes.iter().map(|w| w.answer.reservation.discount.amount()).collect::<Vec<_>>(),
        )
        .bind::<Array<Timestamptz>, _>(
            writes.iter().map(|w| w.answer.reservation.reserved_at).collect::<Vec<_>>(),
        )
        .bind::<Array<Timestamptz>, _>(
            writes.iter().map(|w| w.answer.reservation.expires_at).collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Bool>>, _>(shares)
        .bind::<Array<SmallInt>, _>(caps);
    let events = owned_events(&writes, |a: &Reserved| a.reservation.id.as_str().to_owned());
    let settled: Settled = outbox::bind_owned_events(query, &events).get_result(conn).await?;
    let changed: HashSet<String> = settled.changed.into_iter().collect();
    for write in writes {
        if changed.contains(write.answer.reservation.id.as_str()) {
            outcomes[write.index] = Some(Ok(write.answer));
        }
    }
    Ok(outcomes)
}

/// A request's decision: answered from what was read, or a write to make.
enum Plan<A> {
    Answer(A),
    Write { answer: A, version: i64, event: EncodedEvent },
}

/// What a hold takes beyond its coupon: a share of its order, and from its policy's budget.
#[derive(Default)]
struct Hold {
    share: Option<Share>,
    /// The policy's budget after this hold.
    budget: Option<Budget>,
}

fn plan_reserve(
    job: &ReserveWork,
    found: Option<&(CouponRow, i64, PolicyRow)>,
    existing: Option<&ReservationRow>,
    budget: Option<Budget>,
    order: OrderStack,
    encoder: &dyn EventEncoder,
) -> Result<(Plan<Reserved>, Hold), ReserveError> {
    let (coupon, version, policy) = found.ok_or(ReserveError::CouponNotFound)?;
    let view = ReserveView {
        coupon: IssuedCoupon::try_from(coupon.clone())?,
        policy: Policy::try_from(policy.clone())?,
        existing: existing.cloned().map(Reservation::try_from).transpose()?,
        budget,
        order,
    };
    let request = &job.request;
    let (discount, hold) = match decide_reserve(&view, request, job.now, &job.rules)? {
        ReserveDecision::Replay(reservation) => {
            let answer = Reserved { reservation, coupon: view.coupon, policy: view.policy, replay: true };
            return Ok((Plan::Answer(answer), Hold::default()));
        }
        ReserveDecision::Hold(terms) => (terms.discount, Hold { share: terms.share, budget: terms.budget }),
    };
    let held = Reservation::hold(request, discount, job.now, job.expires_at);
    let event = encoder.encode(&held.event(), &job.context).map_err(StoreError::Unexpected)?;
    let reservation = held.reservation;
    let coupon = view.coupon.held_by(&reservation);
    let answer = Reserved { reservation, coupon, policy: view.policy, replay: false };
    Ok((Plan::Write { answer, version: *version, event }, hold))
}

/// The stacks of the round's orders, by order id.
async fn order_stacks(
    conn: &AsyncPgConnection,
    jobs: &[&ReserveWork],
) -> QueryResult<HashMap<String, OrderStack>> {
    let orders: Vec<String> =
        jobs.iter().filter_map(|j| j.request.order_id.as_ref().map(|o| o.as_str().to_owned())).collect();
    stack::stacks(conn, orders).await
}

impl Work for ConfirmWork {
    type Answer = Confirmed;
    type Error = ConfirmError;
    const NAME: &'static str = "confirm";

    fn keys(&self) -> [Option<String>; 3] {
        [Some(format!("r{}", self.request.reservation_id.as_str())), None, None]
    }

    fn context(&self) -> &EventContext {
        &self.context
    }

    fn round<'a>(
        conn: &'a mut AsyncPgConnection,
        encoder: &'a dyn EventEncoder,
        works: &'a [&'a Self],
    ) -> impl Future<Output = QueryResult<Outcomes<Confirmed, ConfirmError>>> + Send + 'a {
        confirm_round(conn, encoder, works)
    }
}

/// The reservation status a confirmation found (PENDING, or EXPIRED for a late one): the write
/// changes the reservation only if it still has it. With the cap of its order's stack when a late
/// one rejoins it.
struct Expected(ReservationStatus, Option<u16>);

/// What a confirmation reads: the reservation, its coupon with its version, and the policy's
/// budget amount and usage.
type ConfirmRow = (ReservationRow, CouponRow, i64, Option<Decimal>, Decimal);

/// The reservation and coupon a confirmation found, with the coupon's version.
async fn confirm_view(
    conn: &mut AsyncPgConnection,
    found: Option<&ConfirmRow>,
) -> QueryResult<Result<(ConfirmView, i64), ConfirmError>> {
    let Some((row, coupon, version, budget_amount, budget_used)) = found else {
        return Ok(Err(ConfirmError::NotFound));
    };
    let (reservation, coupon) =
        match (Reservation::try_from(row.clone()), IssuedCoupon::try_from(coupon.clone())) {
            (Ok(reservation), Ok(coupon)) => (reservation, coupon),
            (Err(e), _) | (_, Err(e)) => return Ok(Err(e.into())),
        };
    let (superseded, rejoin) = if reservation.status == ReservationStatus::Expired {
        match moved_on(conn, &reservation).await? {
            Ok(moved) => moved,
            Err(e) => return Ok(Err(e.into())),
        }
    } else {
        (false, None)
    };
    let budget =
        budget_amount.map(|amount| Budget { amount: Money::new(amount), used: Money::new(*budget_used) });
    Ok(Ok((ConfirmView { reservation, coupon, superseded, rejoin, budget }, *version)))
}

fn plan_confirm(
    job: &ConfirmWork,
    view: ConfirmView,
    version: i64,
    encoder: &dyn EventEncoder,
) -> Result<(Plan<Confirmed>, Expected), ConfirmError> {
    let expected = Expected(view.reservation.status, view.rejoin.map(|rejoin| rejoin.cap));
    let late = match decide_confirm(&view, &job.request, job.now)? {
        ConfirmDecision::Replay => {
            let answer =
                Confirmed { reservation: view.reservation, policy: view.coupon.policy_id, replay: true };
            return Ok((Plan::Answer(answer), expected));
        }
        ConfirmDecision::Use { late } => late,
    };
    let confirmed = view.reservation.confirm(&job.request, late, job.now);
    let event = encoder.encode(&confirmed.event(), &job.context).map_err(StoreError::Unexpected)?;
    let answer =
        Confirmed { reservation: confirmed.reservation, policy: view.coupon.policy_id, replay: false };
    Ok((Plan::Write { answer, version, event }, expected))
}

async fn confirm_round(
    conn: &mut AsyncPgConnection,
    encoder: &dyn EventEncoder,
    jobs: &[&ConfirmWork],
) -> QueryResult<Outcomes<Confirmed, ConfirmError>> {
    let rids: Vec<String> = jobs.iter().map(|j| j.request.reservation_id.as_str().to_owned()).collect();
    let found: HashMap<String, ConfirmRow> = r::table
        .inner_join(c::table.inner_join(p::table))
        .filter(r::reservation_id.eq_any(&rids))
        .select((
            ReservationRow::as_select(),
            CouponRow::as_select(),
            c::version,
            p::budget_amount,
            p::budget_used,
        ))
        .load::<ConfirmRow>(conn)
        .await?
        .into_iter()
        .map(|row| (row.0.reservation_id.clone(), row))
        .collect();
    let mut outcomes: Outcomes<Confirmed, ConfirmError> = Vec::with_capacity(jobs.len());
    let mut writes: Vec<(Write<Confirmed>, Expected, DateTime<Utc>)> = Vec::new();
    for (index, job) in jobs.iter().enumerate() {
        let planned = match confirm_view(conn, found.get(job.request.reservation_id.as_str())).await? {
            Ok((view, version)) => plan_confirm(job, view, version, encoder),
            Err(e) => Err(e),
        };
        match planned {
            Ok((Plan::Answer(answer), _)) => outcomes.push(Some(Ok(answer))),
            Ok((Plan::Write { answer, version, event }, expected)) => {
                outcomes.push(None);
                writes.push((Write { index, answer, version, event }, expected, job.now));
            }
            Err(e) => outcomes.push(Some(Err(e))),
        }
    }
    if writes.is_empty() {
        return Ok(outcomes);
    }
    // A late confirmation takes a coupon that is free again (ISSUED); a timely one, the coupon
    // its reservation holds. A late one takes its discount from the budget again (`b`; its
    // timeout gave it back), and its share of its order again (`k`): either may fail the
    // statement as a race lost. A timely one leaves the order's stack as it is (held, now used).
    let sql = format!(
        "WITH x AS (SELECT * FROM unnest($1::text[], $2::text[], $3::numeric[], $4::timestamptz[], $5::timestamptz[], \
                                        $6::bigint[], $7::bigint[], $8::bool[], $9::text[], $10::bool[], $11::text[], \
                                        $12::int2[]) \
                    AS x(rid, order_id, discount, used_at, reserved_at, id, version, expired, payment_id, late, expected, \
                         cap)), \
              c AS (UPDATE coupon_issues SET status = 'USED', reservation_id = x.rid, order_id = x.order_id, \
                           discount_amount = x.discount, used_at = x.used_at, \
                           reserved_at = COALESCE(coupon_issues.reserved_at, x.reserved_at), \
                           version = coupon_issues.version + 1, updated_at = x.used_at \
                    FROM x WHERE coupon_issues.id = x.id AND coupon_issues.version = x.version \
                      AND ((coupon_issues.status = 'RESERVED' AND coupon_issues.reservation_id = x.rid) \
                           OR (coupon_issues.status = 'ISSUED' AND coupon_issues.reservation_id IS NULL AND x.expired)) \
                    RETURNING coupon_issues.policy_id, x.rid, x.order_id, x.discount, x.used_at, x.payment_id, \
                              x.late, x.expected, x.expired, x.cap), \
              b AS (UPDATE coupon_policies SET budget_used = coupon_policies.budget_used + s.total \
                    FROM (SELECT policy_id, sum(discount) AS total FROM c WHERE expired GROUP BY policy_id) s \
                    WHERE coupon_policies.id = s.policy_id AND coupon_policies.budget_amount IS NOT NULL \
                    RETURNING coupon_policies.id), \
              r AS (UPDATE coupon_reservations SET status = 'CONFIRMED', confirmed_at = c.used_at, \
                           payment_id = c.payment_id, order_id = c.order_id, late_confirmation = c.late, \
                           updated_at = c.used_at \
                    FROM c WHERE coupon_reservations.reservation_id = c.rid AND coupon_reservations.status = c.expected \
                    RETURNING coupon_reservations.reservation_id, coupon_reservations.order_id, \
                              coupon_reservations.order_exclusive, c.expired, c.cap){}{}",
        stack::join_sql("SELECT order_id, order_exclusive AS exclusive, cap FROM r WHERE expired"),
        settle_sql(13)
    );
    let reservations: Vec<&Reservation> = writes.iter().map(|(w, _, _)| &w.answer.reservation).collect();
    let query = Prepared::new(&sql)
        .bind::<Array<Text>, _>(reservations.iter().map(|r| r.id.as_str().to_owned()).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(
            reservations
                .iter()
                .map(|r| r.order_id.as_ref().map(|o| o.as_str().to_owned()))
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Numeric>, _>(reservations.iter().map(|r| r.discount.amount()).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(writes.iter().map(|(_, _, now)| *now).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(reservations.iter().map(|r| r.reserved_at).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(reservations.iter().map(|r| r.coupon_id.get()).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(writes.iter().map(|(w, _, _)| w.version).collect::<Vec<_>>())
        .bind::<Array<Bool>, _>(
            writes.iter().map(|(_, e, _)| e.0 == ReservationStatus::Expired).collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Text>>, _>(
            reservations
                .iter()
                .map(|r| r.payment_id.as_ref().map(|p| p.as_str().to_owned()))
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Bool>, _>(reservations.iter().map(|r| r.late_confirmation).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(writes.iter().map(|(_, e, _)| e.0.as_str()).collect::<Vec<_>>())
        .bind::<Array<Nullable<SmallInt>>, _>(
            writes
                .iter()
                .map(|(_, e, _)| e.1.map(|cap| i16::try_from(cap).unwrap_or(i16::MAX)))
                .collect::<Vec<_>>(),
        );
    let plain: Vec<Write<Confirmed>> = writes.into_iter().map(|(w, _, _)| w).collect();
    let events = owned_events(&plain, |a: &Confirmed| a.reservation.id.as_str().to_owned());
    let settled: Settled = outbox::bind_owned_events(query, &events).get_result(conn).await?;
    let changed: HashSet<String> = settled.changed.into_iter().collect();
    for write in plain {
        if changed.contains(write.answer.reservation.id.as_str()) {
            if write.answer.reservation.late_confirmation {
                metrics::counter!("coupon_late_confirmations_total", "outcome" => "honoured").increment(1);
            }
            outcomes[write.index] = Some(Ok(write.answer));
        }
    }
    Ok(outcomes)
}

/// Whether what a timed-out reservation held has moved on: its coupon was reserved again after
/// it (`superseded`); and, when it held a share of its order, what it needs to rejoin it.
async fn moved_on(
    conn: &mut AsyncPgConnection,
    reservation: &Reservation,
) -> QueryResult<Result<(bool, Option<Rejoin>), StoreError>> {
    #[derive(QueryableByName)]
    struct MovedOn {
        #[diesel(sql_type = Bool)]
        superseded: bool,
        #[diesel(sql_type = Nullable<Bool>)]
        order_exclusive: Option<bool>,
        #[diesel(sql_type = Nullable<SmallInt>)]
        exclusive: Option<i16>,
        #[diesel(sql_type = Nullable<SmallInt>)]
        stackable: Option<i16>,
        #[diesel(sql_type = Nullable<SmallInt>)]
        cap: Option<i16>,
    }
    // Planned at each execution (a late payment is rare): a plan cached while `order_stacks` was
    // small would scan it whole (see `stack::stacks`).
    let found: MovedOn = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM coupon_reservations WHERE coupon_id = $1 AND reservation_id <> $2 \
                          AND reserved_at >= $3) AS superseded, \
                me.order_exclusive, k.exclusive, k.stackable, k.cap \
         FROM coupon_reservations me LEFT JOIN order_stacks k ON k.order_id = me.order_id \
         WHERE me.reservation_id = $2",
    )
    .bind::<BigInt, _>(reservation.coupon_id.get())
    .bind::<Text, _>(reservation.id.as_str().to_owned())
    .bind::<Timestamptz, _>(reservation.reserved_at)
    .get_result(conn)
    .await?;
    let rejoin = match (found.order_exclusive, found.exclusive, found.stackable, found.cap) {
        (None, ..) => None,
        (Some(exclusive), Some(held), Some(stackable), Some(cap)) => Some(Rejoin {
            share: stack::share(exclusive),
            stack: stack::counted(held, stackable),
            cap: u16::try_from(cap).unwrap_or(0),
        }),
        (Some(_), ..) => {
            let order = reservation.order_id.as_ref().map_or("", |o| o.as_str());
            return Ok(Err(corrupt("order_stacks", format!("no stack for order {order}"))));
        }
    };
    Ok(Ok((found.superseded, rejoin)))
}
