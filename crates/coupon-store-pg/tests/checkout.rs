//! Reservations and the housekeeping jobs against the real PostgreSQL: races between checkouts,
//! the timeout and the late-confirmation rule, expiry in batches, the job lock, and the same rules
//! reached through consumed events (the inbox).

use coupon_domain::clock::{Clock, SystemClock};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use coupon_domain::consume::{Command, DeadLetter, Delivery, Inbox, InboxError, Outcome, Parsed, Source};
use coupon_domain::discount::{DiscountRule, DiscountType};
use coupon_domain::event::{CouponEvent, EncodedEvent, EventContext, EventEncoder};
use coupon_domain::id::{CouponId, UserId};
use coupon_domain::jobs::{Housekeeping, JobLock, JobName, JobOutcome, JobSettings, Jobs, Trigger};
use coupon_domain::lifecycle::Forbidden;
use coupon_domain::money::Money;
use coupon_domain::policy::{DistributionType, IssuanceWindow, NewPolicy, Policy};
use coupon_domain::policy_store::PolicyStore;
use coupon_domain::port::StoreError;
use coupon_domain::reservation::{
    CancelReason, Checkout, CheckoutRules, ConfirmError, ConfirmRequest, ExternalRef, PaymentClaims,
    ReservationId, ReservationStatus, ReserveError, ReserveRequest,
};
use coupon_store_pg::housekeeping::{PgHousekeeping, PgJobLock};
use coupon_store_pg::inbox::PgInbox;
use coupon_store_pg::policy::PgPolicyStore;
use coupon_store_pg::pool::{PgConfig, PgPool};
use coupon_store_pg::reservation::PgReservationStore;
use coupon_store_pg::tls::PgTls;
use coupon_testkit::TestDatabase;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use tokio::sync::Barrier;

/// Names each event by its type, with a unique id: these tests look at rows, not payloads.
#[derive(Default)]
struct TypesOnly;

static EVENTS: AtomicU64 = AtomicU64::new(0);

impl EventEncoder for TypesOnly {
    fn encode(&self, event: &CouponEvent<'_>, _: &EventContext) -> anyhow::Result<EncodedEvent> {
        let (event_type, coupon) = match event {
            CouponEvent::Issued { coupon, .. } => ("COUPON_ISSUED", coupon.id.get()),
            CouponEvent::Reserved { reservation } => ("COUPON_RESERVED", reservation.coupon_id.get()),
            CouponEvent::Used { reservation, .. } => ("COUPON_USED", reservation.coupon_id.get()),
            CouponEvent::Cancelled { reservation, .. } => ("COUPON_CANCELLED", reservation.coupon_id.get()),
            CouponEvent::Revoked { coupon, .. } => ("COUPON_CANCELLED", coupon.id.get()),
            CouponEvent::Expired { coupon, .. } => ("COUPON_EXPIRED", coupon.id.get()),
            CouponEvent::BudgetThreshold { policy, .. } => ("COUPON_BUDGET_THRESHOLD", policy.get()),
        };
        let n = EVENTS.fetch_add(1, Ordering::Relaxed);
        Ok(EncodedEvent {
            event_id: format!("00000000-0000-4000-8000-{n:012}"),
            topic: event_type.to_lowercase(),
            key: coupon.to_string(),
            event_type,
            payload: "{}".into(),
        })
    }

    /// Reason, offset and mismatched fields: what these tests read of a DLQ record.
    fn dead_letter(&self, letter: &DeadLetter<'_>) -> anyhow::Result<EncodedEvent> {
        let n = EVENTS.fetch_add(1, Ordering::Relaxed);
        let fields: Vec<&str> = letter.refusal.mismatches.iter().map(|m| m.field).collect();
        let payload = serde_json::json!({
            "reason": letter.refusal.reason,
            "offset": letter.delivery.offset,
            "mismatches": fields,
        });
        Ok(EncodedEvent {
            event_id: format!("00000000-0000-4000-8000-{n:012}"),
            topic: letter.source.dead_letter_topic.clone(),
            key: String::new(),
            event_type: "DEAD_LETTER",
            payload: payload.to_string(),
        })
    }
}

struct Fixture {
    db: TestDatabase,
    pool: PgPool,
    store: Arc<PgReservationStore>,
    policy: Policy,
}

async fn fixture() -> Fixture {
    let db = TestDatabase::migrated().await;
    let pool = PgPool::new(&PgConfig {
        connection_string: db.connection_string(),
        max_size: 16,
        timeout: StdDuration::from_secs(30),
        tls: PgTls::default(),
    })
    .expect("pool");
    let now = SystemClock.now();
    let policy = PgPolicyStore::new(pool.clone())
        .create(
            NewPolicy {
                name: "Ten percent".into(),
                code: None,
                description: None,
                discount: DiscountRule::new(
                    DiscountType::Percentage,
                    Decimal::from(10),
                    Some(Money::from(10_000)),
                    None,
                )
                .expect("rule"),
                distribution: DistributionType::Download,
                max_issue_count: None,
                max_issue_per_user: 1,
                valid_days: 30,
                window: IssuanceWindow::new(now - Duration::days(1), now + Duration::days(1))
                    .expect("window"),
                is_active: true,
                code_mode: coupon_domain::policy::CodeMode::Shared,
                stackable: false,
                budget_amount: None,
            },
            now,
            None,
        )
        .await
        .expect("policy");
    let store = Arc::new(PgReservationStore::new(pool.clone(), Arc::new(TypesOnly)).expect("store"));
    Fixture { db, pool, store, policy }
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct Word {
    #[diesel(sql_type = Text)]
    word: String,
}

/// Issued coupons for users `first..first+n`, expiring at `expires_at` (arranged with SQL).
async fn coupons(f: &Fixture, first: i64, n: i64, expires_at: DateTime<Utc>) -> Vec<CouponId> {
    let mut conn = f.db.connect().await;
    let rows: Vec<Id> = diesel::sql_query(
        "INSERT INTO coupon_issues (policy_id, user_id, status, issued_at, expires_at) \
         SELECT $1, u, 'ISSUED', $2 - interval '40 days', $2 FROM generate_series($3::bigint, $4::bigint) u \
         RETURNING id",
    )
    .bind::<BigInt, _>(f.policy.id.get())
    .bind::<diesel::sql_types::Timestamptz, _>(expires_at)
    .bind::<BigInt, _>(first)
    .bind::<BigInt, _>(first + n - 1)
    .load(&mut conn)
    .await
    .expect("coupons");
    rows.into_iter().map(|r| CouponId::new(r.id).expect("id")).collect()
}

async fn word(f: &Fixture, sql: &str) -> String {
    let mut conn = f.db.connect().await;
    diesel::sql_query(sql).get_result::<Word>(&mut conn).await.expect(sql).word
}

fn checkout(f: &Fixture, timeout: StdDuration) -> Checkout {
    Checkout::new(f.store.clone(), Arc::new(SystemClock), timeout, CheckoutRules::default())
}

fn id(raw: &str) -> ReservationId {
    ReservationId::parse(raw).expect("reservation id")
}

fn order(raw: &str) -> ExternalRef {
    ExternalRef::parse(raw, ExternalRef::ORDER_MAX).expect("order id")
}

fn hold(reservation: &str, user: i64, coupon: CouponId, amount: i64) -> ReserveRequest {
    ReserveRequest {
        reservation_id: id(reservation),
        user: UserId::new(user).expect("user"),
        coupon,
        order_amount: Money::from(amount),
        order_id: Some(order(&format!("ORDER-{reservation}"))),
    }
}

fn payment(reservation: &str, pay: &str) -> ConfirmRequest {
    ConfirmRequest {
        reservation_id: id(reservation),
        order_id: order(&format!("ORDER-{reservation}")),
        payment_id: Some(ExternalRef::parse(pay, ExternalRef::PAYMENT_MAX).expect("payment id")),
        user: None,
        payment: None,
    }
}

fn jobs(f: &Fixture, holder: &str) -> Jobs {
    Jobs::new(
        Arc::new(PgJobLock::new(f.pool.clone())),
        Arc::new(PgHousekeeping::new(f.pool.clone(), Arc::new(TypesOnly))),
        Arc::new(SystemClock),
        holder.into(),
        JobSettings {
            batch_size: 100,
            lease: StdDuration::from_secs(60),
            hold_at_least: StdDuration::ZERO,
            zone: chrono_tz::Tz::UTC,
        },
    )
}

async fn run(jobs: &Jobs, job: JobName) -> u64 {
    match jobs.run(job, Trigger::Manual).await.expect("job") {
        JobOutcome::Ran(report) => report.affected,
        JobOutcome::Busy => panic!("{} was busy", job.as_str()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_checkouts_racing_for_one_coupon_one_wins() {
    let f = fixture().await;
    let coupon = coupons(&f, 42, 1, SystemClock.now() + Duration::days(5)).await[0];
    let barrier = Arc::new(Barrier::new(10));
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let (checkout, barrier) = (checkout(&f, StdDuration::from_secs(600)), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                checkout.reserve(&hold(&format!("R{i}"), 42, coupon, 50_000), "test".into()).await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(reserved) => {
                won += 1;
                assert_eq!(reserved.reservation.discount, Money::from(5_000), "10% of 50,000");
            }
            Err(ReserveError::Forbidden(Forbidden::NotAvailable)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(
        word(&f, "SELECT count(*)::text AS word FROM coupon_reservations WHERE status = 'PENDING'").await,
        "1"
    );
    assert_eq!(word(&f, "SELECT status AS word FROM coupon_issues").await, "RESERVED");
    assert_eq!(word(&f, "SELECT string_agg(event_type, ',') AS word FROM outbox").await, "COUPON_RESERVED");
}

/// Reserves and confirmations arriving together are decided in shared rounds (lanes). Each
/// caller still gets its own answer: 300 distinct checkouts; 20 of their reservation ids reused
/// at once for other coupons, so that exactly one of each pair is refused with IdConflict (the
/// round's insert fails and its requests are redone one by one); a second hold on a coupon that a
/// checkout holds or used is refused. Every change has exactly its one event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_checkouts_is_batched_and_each_caller_gets_its_own_answer() {
    let f = fixture().await;
    let ids = coupons(&f, 1_000, 300, SystemClock.now() + Duration::days(5)).await;
    let extra = coupons(&f, 5_000, 20, SystemClock.now() + Duration::days(5)).await;
    let start = Arc::new(Barrier::new(ids.len() + 2 * extra.len()));
    let mut tasks = Vec::new();
    for (k, coupon) in ids.iter().copied().enumerate() {
        let (desk, barrier) = (checkout(&f, StdDuration::from_secs(600)), start.clone());
        let user = 1_000 + i64::try_from(k).expect("k");
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let rid = format!("B{k}");
            desk.reserve(&hold(&rid, user, coupon, 10_000), "burst".into()).await.map(|_| "reserved")?;
            desk.confirm(&payment(&rid, &format!("P{k}")), "burst".into())
                .await
                .map(|_| "used")
                .map_err(|e| ReserveError::Store(StoreError::Unexpected(anyhow::anyhow!("{e:?}"))))
        }));
    }
    for (k, coupon) in extra.iter().copied().enumerate() {
        let user = 5_000 + i64::try_from(k).expect("k");
        // The id of one of the 300 checkouts, for another coupon: one of the two is refused.
        let (desk, barrier) = (checkout(&f, StdDuration::from_secs(600)), start.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            desk.reserve(&hold(&format!("B{k}"), user, coupon, 10_000), "reuse".into())
                .await
                .map(|_| "stole id")
        }));
        // A second hold on a coupon that the burst holds or used.
        let (desk, barrier, held) = (checkout(&f, StdDuration::from_secs(600)), start.clone(), ids[k]);
        let owner = 1_000 + i64::try_from(k).expect("k");
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            tokio::time::sleep(StdDuration::from_millis(200)).await;
            desk.reserve(&hold(&format!("X{k}"), owner, held, 10_000), "twice".into())
                .await
                .map(|_| "held twice")
        }));
    }
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for task in tasks {
        let label = match task.await.expect("task") {
            Ok(label) => label.to_owned(),
            Err(ReserveError::IdConflict(_)) => "id conflict".into(),
            Err(ReserveError::Forbidden(Forbidden::NotAvailable)) => "not available".into(),
            Err(ReserveError::Forbidden(Forbidden::AlreadyUsed)) => "already used".into(),
            Err(other) => panic!("unexpected {other:?}"),
        };
        *tally.entry(label).or_default() += 1;
    }
    let used = tally.get("used").copied().unwrap_or(0);
    let stolen = tally.get("stole id").copied().unwrap_or(0);
    let n = |label: &str| tally.get(label).copied().unwrap_or(0);
    assert_eq!(n("id conflict"), 20, "each reused id is refused once: {tally:?}");
    assert_eq!(used + stolen, 300, "{tally:?}");
    // A coupon whose checkout lost its id to the reuse stayed free, so the second hold got it;
    // every other second hold is refused.
    assert_eq!(n("held twice"), stolen, "{tally:?}");
    assert_eq!(n("held twice") + n("already used") + n("not available"), 20, "{tally:?}");
    let count = |sql: &'static str| word(&f, sql);
    assert_eq!(
        count("SELECT count(*)::text AS word FROM coupon_issues WHERE status = 'USED'").await,
        used.to_string()
    );
    assert_eq!(
        count("SELECT count(*)::text AS word FROM outbox WHERE event_type = 'COUPON_USED'").await,
        used.to_string()
    );
    assert_eq!(
        count("SELECT count(*)::text AS word FROM outbox WHERE event_type = 'COUPON_RESERVED'").await,
        count("SELECT count(*)::text AS word FROM coupon_reservations").await,
        "one coupon.reserved per reservation"
    );
    assert_eq!(
        count(
            "SELECT count(*)::text AS word FROM coupon_issues i JOIN coupon_reservations r \
             ON r.reservation_id = i.reservation_id WHERE r.coupon_id <> i.id"
        )
        .await,
        "0",
        "every coupon points at its own reservation"
    );
}

/// The write is one statement without BEGIN/COMMIT around it: if the reservation did not change
/// with its coupon (here a trigger swallows the reservation update), the statement fails as a
/// whole and commits nothing.
#[tokio::test]
async fn a_write_that_would_leave_coupon_and_reservation_out_of_step_commits_nothing() {
    let f = fixture().await;
    let coupon = coupons(&f, 42, 1, SystemClock.now() + Duration::days(5)).await[0];
    let checkout = checkout(&f, StdDuration::from_secs(600));
    checkout.reserve(&hold("R1", 42, coupon, 10_000), "c1".into()).await.expect("reserve");
    let mut conn = f.db.connect().await;
    for sql in [
        "CREATE FUNCTION swallow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
        "CREATE TRIGGER swallow BEFORE UPDATE ON coupon_reservations FOR EACH ROW EXECUTE FUNCTION swallow()",
    ] {
        diesel::sql_query(sql).execute(&mut conn).await.expect(sql);
    }
    let refused = checkout.confirm(&payment("R1", "P1"), "c2".into()).await;
    assert!(matches!(refused, Err(ConfirmError::Store(_))), "{refused:?}");
    assert_eq!(
        word(&f, "SELECT status || ' ' || version AS word FROM coupon_issues").await,
        "RESERVED 1",
        "the coupon update was not committed"
    );
    assert_eq!(
        word(&f, "SELECT string_agg(event_type, ',' ORDER BY id) AS word FROM outbox").await,
        "COUPON_RESERVED",
        "no coupon.used without its change"
    );
}

#[tokio::test]
async fn reserve_confirm_and_their_replays() {
    let f = fixture().await;
    let coupon = coupons(&f, 42, 1, SystemClock.now() + Duration::days(5)).await[0];
    let checkout = checkout(&f, StdDuration::from_secs(600));
    let first = checkout.reserve(&hold("R1", 42, coupon, 12_345), "c1".into()).await.expect("reserve");
    assert_eq!(first.reservation.discount, Money::from(1_234), "10% of 12,345 rounded down");
    let again = checkout.reserve(&hold("R1", 42, coupon, 12_345), "c2".into()).await.expect("replay");
    assert!(again.replay);
    assert_eq!(again.reservation.reserved_at, first.reservation.reserved_at, "the same answer");
    assert!(matches!(
        checkout.reserve(&hold("R1", 42, coupon, 20_000), "c3".into()).await,
        Err(ReserveError::IdConflict(_))
    ));
    assert!(matches!(
        checkout.reserve(&hold("R1", 43, coupon, 12_345), "c4".into()).await,
        Err(ReserveError::NotOwner)
    ));

    let used = checkout.confirm(&payment("R1", "P1"), "c5".into()).await.expect("confirm");
    assert_eq!(used.reservation.status, ReservationStatus::Confirmed);
    assert!(checkout.confirm(&payment("R1", "P1"), "c6".into()).await.expect("replay").replay);
    assert!(matches!(
        checkout.confirm(&payment("R1", "P2"), "c7".into()).await,
        Err(ConfirmError::UsedByAnotherPayment)
    ));
    assert_eq!(
        word(
            &f,
            "SELECT status || ' ' || order_id || ' ' || discount_amount::int AS word FROM coupon_issues"
        )
        .await,
        "USED ORDER-R1 1234"
    );
    assert_eq!(
        word(&f, "SELECT string_agg(event_type, ',' ORDER BY id) AS word FROM outbox").await,
        "COUPON_RESERVED,COUPON_USED",
        "one event per change, none for replays or refusals"
    );
}

#[tokio::test]
async fn a_timed_out_reservation_is_released_by_the_job_and_late_payments_follow_spec_4_4() {
    let f = fixture().await;
    let ids = coupons(&f, 42, 2, SystemClock.now() + Duration::days(5)).await;
    let short = checkout(&f, StdDuration::from_millis(1));
    let long = checkout(&f, StdDuration::from_secs(600));
    let jobs = jobs(&f, "pod-a");
    // Coupon 0: times out, nobody else takes it, the late payment is honoured.
    short.reserve(&hold("A1", 42, ids[0], 50_000), "t".into()).await.expect("reserve");
    // Coupon 1: times out, is reserved again under B2, and the late payment of B1 is refused.
    short.reserve(&hold("B1", 43, ids[1], 50_000), "t".into()).await.expect("reserve");
    tokio::time::sleep(StdDuration::from_millis(20)).await;
    assert_eq!(run(&jobs, JobName::ReservationTimeout).await, 2);
    assert_eq!(run(&jobs, JobName::ReservationTimeout).await, 0, "idempotent");
    long.reserve(&hold("B2", 43, ids[1], 30_000), "t".into()).await.expect("free again");
    assert_eq!(word(&f, STACK_AUDIT).await, "ORDER-A1 0 0,ORDER-B1 0 0,ORDER-B2 1 0");

    let late = long.confirm(&payment("A1", "P1"), "t".into()).await.expect("honoured");
    assert!(late.reservation.late_confirmation);
    assert_eq!(
        word(&f, STACK_AUDIT).await,
        "ORDER-A1 1 0,ORDER-B1 0 0,ORDER-B2 1 0",
        "A1 rejoined its order"
    );
    assert!(matches!(long.confirm(&payment("B1", "P2"), "t".into()).await, Err(ConfirmError::Expired)));
    // Releasing the old reservation does not free the coupon that B2 holds.
    let old = long.release(&id("B1"), None, CancelReason::PaymentFailed, "t".into()).await.expect("release");
    assert!(old.replay);
    assert_eq!(
        word(
            &f,
            &format!(
                "SELECT status || ' ' || reservation_id AS word FROM coupon_issues WHERE id = {}",
                ids[1]
            )
        )
        .await,
        "RESERVED B2"
    );
    assert_eq!(
        word(&f, "SELECT string_agg(reservation_id || '=' || status, ',' ORDER BY reservation_id) AS word FROM coupon_reservations").await,
        "A1=CONFIRMED,B1=EXPIRED,B2=PENDING"
    );
    assert_eq!(
        word(&f, "SELECT count(*)::text AS word FROM outbox WHERE event_type = 'COUPON_CANCELLED'").await,
        "2",
        "one coupon.cancelled per timeout"
    );
}

#[tokio::test]
async fn releases_and_order_cancellations() {
    let f = fixture().await;
    let ids = coupons(&f, 42, 2, SystemClock.now() + Duration::days(5)).await;
    let checkout = checkout(&f, StdDuration::from_secs(600));
    checkout.reserve(&hold("R1", 42, ids[0], 50_000), "t".into()).await.expect("reserve");
    let released = checkout
        .release(&id("R1"), Some(UserId::new(42).expect("user")), CancelReason::Released, "t".into())
        .await
        .expect("release");
    assert!(!released.replay);
    assert!(
        checkout.release(&id("R1"), None, CancelReason::Released, "t".into()).await.expect("again").replay
    );
    assert!(matches!(
        checkout.reserve(&hold("R1", 42, ids[0], 50_000), "t".into()).await,
        Err(ReserveError::IdReleased(_))
    ));

    // Used, then the order is cancelled: the coupon comes back, once.
    checkout.reserve(&hold("R2", 43, ids[1], 50_000), "t".into()).await.expect("reserve");
    checkout.confirm(&payment("R2", "P1"), "t".into()).await.expect("confirm");
    let restored = checkout.cancel_order(ids[1], &order("ORDER-R2"), "t".into()).await.expect("restore");
    assert!(!restored.replay);
    assert!(checkout.cancel_order(ids[1], &order("ORDER-R2"), "t".into()).await.expect("again").replay);
    assert_eq!(
        word(
            &f,
            &format!(
                "SELECT status || coalesce(order_id, '-') AS word FROM coupon_issues WHERE id = {}",
                ids[1]
            )
        )
        .await,
        "ISSUED-"
    );
    // It can be held again by a new checkout.
    checkout.reserve(&hold("R3", 43, ids[1], 50_000), "t".into()).await.expect("reusable");
}

#[tokio::test]
async fn expiry_runs_in_batches_and_waits_for_holds() {
    let f = fixture().await;
    let past = SystemClock.now() - Duration::hours(1);
    coupons(&f, 1, 250, past).await;
    let held = coupons(&f, 1000, 1, SystemClock.now() + Duration::milliseconds(300)).await[0];
    checkout(&f, StdDuration::from_secs(600))
        .reserve(&hold("H1", 1000, held, 50_000), "t".into())
        .await
        .expect("reserve");
    tokio::time::sleep(StdDuration::from_millis(400)).await;

    let jobs = jobs(&f, "pod-a");
    let JobOutcome::Ran(report) = jobs.run(JobName::Expiry, Trigger::Manual).await.expect("run") else {
        panic!("busy")
    };
    assert_eq!((report.affected, report.batches), (250, 3), "batches of 100");
    assert_eq!(run(&jobs, JobName::Expiry).await, 0, "a second run changes nothing");
    assert_eq!(
        word(&f, "SELECT count(*)::text AS word FROM coupon_issues WHERE status = 'EXPIRED'").await,
        "250"
    );
    assert_eq!(
        word(&f, &format!("SELECT status AS word FROM coupon_issues WHERE id = {held}")).await,
        "RESERVED",
        "a held coupon past its date waits for its reservation"
    );
    assert_eq!(
        word(&f, "SELECT count(*)::text AS word FROM outbox WHERE event_type = 'COUPON_EXPIRED'").await,
        "250"
    );
    assert_eq!(
        word(
            &f,
            "SELECT count(*)::text AS word FROM job_runs WHERE job_name = 'expiry' AND outcome = 'SUCCEEDED'"
        )
        .await,
        "2"
    );
}

#[tokio::test]
async fn the_job_lock_has_one_holder_and_lapses() {
    let f = fixture().await;
    let lock = PgJobLock::new(f.pool.clone());
    assert!(lock.acquire(JobName::Statistics, "pod-a", StdDuration::from_millis(300)).await.expect("a"));
    assert!(!lock.acquire(JobName::Statistics, "pod-b", StdDuration::from_secs(60)).await.expect("b"));
    assert!(lock.acquire(JobName::Expiry, "pod-b", StdDuration::from_secs(60)).await.expect("another job"));
    assert_eq!(
        jobs(&f, "pod-b").run(JobName::Statistics, Trigger::Manual).await.expect("busy"),
        JobOutcome::Busy
    );
    tokio::time::sleep(StdDuration::from_millis(400)).await;
    assert!(
        lock.acquire(JobName::Statistics, "pod-b", StdDuration::from_secs(60)).await.expect("lapsed"),
        "a dead holder's lock lapses"
    );
}

#[tokio::test]
async fn statistics_count_the_day_in_hourly_buckets() {
    let f = fixture().await;
    let ids = coupons(&f, 1, 3, SystemClock.now() + Duration::days(5)).await;
    let mut conn = f.db.connect().await;
    diesel::sql_query("UPDATE coupon_issues SET issued_at = now()").execute(&mut conn).await.expect("today");
    let checkout = checkout(&f, StdDuration::from_secs(600));
    checkout.reserve(&hold("S1", 1, ids[0], 50_000), "t".into()).await.expect("reserve");
    checkout.confirm(&payment("S1", "P1"), "t".into()).await.expect("confirm");
    let housekeeping = PgHousekeeping::new(f.pool.clone(), Arc::new(TypesOnly));
    // The day and hour as the database stored them (no race with a clock tick here).
    let today: chrono::NaiveDate =
        word(&f, "SELECT (min(issued_at) AT TIME ZONE 'UTC')::date::text AS word FROM coupon_issues")
            .await
            .parse()
            .expect("date");
    assert_eq!(housekeeping.refresh_statistics(today, today, chrono_tz::Tz::UTC).await.expect("refresh"), 1);
    housekeeping.refresh_statistics(today, today, chrono_tz::Tz::UTC).await.expect("idempotent");
    let hour = word(
        &f,
        "SELECT extract(hour FROM min(issued_at) AT TIME ZONE 'UTC')::int::text AS word FROM coupon_issues",
    )
    .await;
    assert_eq!(
        word(&f, &format!(
            "SELECT total_issued || ' ' || total_used || ' ' || total_reserved || ' ' || (issue_by_hour->>'{hour}') \
             AS word FROM daily_statistics"
        ))
        .await,
        "3 1 1 3"
    );
}

fn delivery(offset: i64, parsed: Result<Parsed, String>) -> Delivery {
    Delivery { offset, key: Some(b"k".to_vec()), value: format!("record {offset}").into_bytes(), parsed }
}

fn command(event_id: &str, command: Command) -> Result<Parsed, String> {
    Ok(Parsed { event_id: event_id.into(), correlation_id: format!("corr-{event_id}"), command })
}

/// Consumed events through the inbox: each record's effect, dedupe row and DLQ record commit with
/// the partition's offset; a consumer whose offset is stale changes nothing.
#[tokio::test]
async fn consumed_events_apply_once_with_their_offset_and_refusals_go_to_the_dlq() {
    let f = fixture().await;
    let ids = coupons(&f, 42, 2, SystemClock.now() + Duration::days(5)).await;
    let checkout = checkout(&f, StdDuration::from_secs(600));
    checkout.reserve(&hold("R1", 42, ids[0], 10_000), "c".into()).await.expect("reserve R1");
    checkout.reserve(&hold("R2", 43, ids[1], 10_000), "c".into()).await.expect("reserve R2");
    let inbox = PgInbox::new(f.pool.clone(), Arc::new(TypesOnly), chrono_tz::Tz::UTC);
    let source = Source { topic: "payments".into(), partition: 1, dead_letter_topic: "payments.DLQ".into() };
    let paid = |rid: &str| Command::Confirm(payment(rid, &format!("P-{rid}")));
    let records = [
        delivery(0, command("e1", paid("R1"))),
        delivery(1, command("e1", paid("R1"))),
        delivery(
            2,
            command("e2", Command::Release { reservation_id: id("R2"), payment: PaymentClaims::default() }),
        ),
        delivery(3, command("e3", paid("NOPE"))),
        delivery(4, Err("MALFORMED_JSON".into())),
        delivery(5, command("e5", Command::CancelOrder { coupon: ids[0], order: order("ORDER-R1") })),
        delivery(6, command("e6", Command::Nothing)),
    ];
    assert_eq!(inbox.next_offset("payments", 1).await.expect("offset"), None);
    let outcomes = inbox.apply(&source, 0, &records, SystemClock.now()).await.expect("apply");
    assert_eq!(
        outcomes,
        [
            Outcome::Applied,
            Outcome::Duplicate,
            Outcome::Applied,
            Outcome::DeadLettered("RESERVATION_NOT_FOUND".into()),
            Outcome::DeadLettered("MALFORMED_JSON".into()),
            Outcome::Applied,
            Outcome::Nothing,
        ]
    );
    assert_eq!(inbox.next_offset("payments", 1).await.expect("offset"), Some(7));
    assert_eq!(
        word(&f, "SELECT string_agg(status, ',' ORDER BY id) AS word FROM coupon_issues").await,
        "ISSUED,ISSUED",
        "R1 was used and then restored by the order cancellation; R2 was released"
    );
    assert_eq!(
        word(&f, "SELECT string_agg(event_type, ',' ORDER BY id) AS word FROM outbox WHERE id > 2").await,
        "COUPON_USED,COUPON_CANCELLED,DEAD_LETTER,DEAD_LETTER,COUPON_CANCELLED"
    );
    assert_eq!(
        word(
            &f,
            "SELECT string_agg(payload::json->>'reason' || '@' || (payload::json->>'offset'), ',' ORDER BY id) AS word \
             FROM outbox WHERE topic = 'payments.DLQ'"
        )
        .await,
        "RESERVATION_NOT_FOUND@3,MALFORMED_JSON@4"
    );
    assert_eq!(
        word(&f, "SELECT count(*)::text AS word FROM processed_events").await,
        "5",
        "one row per eventId"
    );

    // A consumer that still thinks the partition is at offset 0 (another one took it over).
    let replay = inbox.apply(&source, 0, &records, SystemClock.now()).await;
    assert!(matches!(replay, Err(InboxError::Fenced)), "{replay:?}");
    // Redelivered after the offset: the dedupe row answers.
    let redelivered = [delivery(
        7,
        command("e2", Command::Release { reservation_id: id("R2"), payment: PaymentClaims::default() }),
    )];
    assert_eq!(
        inbox.apply(&source, 7, &redelivered, SystemClock.now()).await.expect("apply"),
        [Outcome::Duplicate]
    );
    assert_eq!(inbox.next_offset("payments", 1).await.expect("offset"), Some(8));
    assert_eq!(word(&f, "SELECT count(*)::text AS word FROM outbox").await, "7", "nothing more was written");
}

/// SPEC §10: a payment event whose user, coupon or order differs from its reservation's changes
/// nothing and goes to the DLQ as `PAYMENT_MISMATCH` with the fields that differ; the matching
/// payment behind it on the same partition is applied.
#[tokio::test]
async fn payments_for_another_user_coupon_or_order_go_to_the_dlq_and_change_nothing() {
    let f = fixture().await;
    let ids = coupons(&f, 42, 2, SystemClock.now() + Duration::days(5)).await;
    let checkout = checkout(&f, StdDuration::from_secs(600));
    checkout.reserve(&hold("R1", 42, ids[0], 100_000), "c".into()).await.expect("reserve R1");
    checkout.reserve(&hold("R2", 43, ids[1], 100_000), "c".into()).await.expect("reserve R2");
    let inbox = PgInbox::new(f.pool.clone(), Arc::new(TypesOnly), chrono_tz::Tz::UTC);
    let source = Source { topic: "payments".into(), partition: 0, dead_letter_topic: "payments.DLQ".into() };
    let forged =
        PaymentClaims { user: UserId::new(44), coupon: Some(ids[1]), order: Some(order("ORDER-OTHER")) };
    let honest = |rid: &str, coupon: CouponId| PaymentClaims {
        user: UserId::new(42),
        coupon: Some(coupon),
        order: Some(order(&format!("ORDER-{rid}"))),
    };
    let confirm = |rid: &str, claims: PaymentClaims| {
        let mut request = payment(rid, &format!("P-{rid}"));
        request.order_id = claims.order.clone().expect("order");
        request.payment = Some(claims);
        Command::Confirm(request)
    };
    let records = [
        delivery(0, command("m1", confirm("R1", forged.clone()))),
        delivery(1, command("m2", Command::Release { reservation_id: id("R2"), payment: forged })),
        delivery(2, command("ok", confirm("R1", honest("R1", ids[0])))),
    ];
    let outcomes = inbox.apply(&source, 0, &records, SystemClock.now()).await.expect("apply");
    assert_eq!(
        outcomes,
        [
            Outcome::DeadLettered("PAYMENT_MISMATCH".into()),
            Outcome::DeadLettered("PAYMENT_MISMATCH".into()),
            Outcome::Applied,
        ]
    );
    assert_eq!(
        word(&f, "SELECT string_agg(status, ',' ORDER BY id) AS word FROM coupon_issues").await,
        "USED,RESERVED",
        "only the honest payment changed anything"
    );
    assert_eq!(
        word(&f, "SELECT string_agg(status, ',' ORDER BY reservation_id) AS word FROM coupon_reservations")
            .await,
        "CONFIRMED,PENDING"
    );
    assert_eq!(
        word(
            &f,
            "SELECT string_agg(payload::json->>'reason' || ':' || (payload::json->>'mismatches'), ';' ORDER BY id) \
             AS word FROM outbox WHERE topic = 'payments.DLQ'"
        )
        .await,
        r#"PAYMENT_MISMATCH:["userId","couponId","orderId"];PAYMENT_MISMATCH:["userId","orderId"]"#,
        "R2's coupon is ids[1], so only its user and order differ"
    );
}

/// A claimed idempotency key: reserve, confirm and release write their answers in their own
/// transaction; a holder whose claim was taken over (its lease lapsed) commits nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_answers_commit_with_their_effect_and_a_lost_claim_commits_nothing() {
    use coupon_domain::context::Cause;
    use coupon_domain::idempotency::{Answer, Claimed, Entry, IdempotencyStore, KeyScope, Receipt};
    use coupon_domain::reservation::{Confirmed, Released, Reserved};
    use coupon_store_pg::idempotency::PgIdempotency;

    let f = fixture().await;
    let checkout = checkout(&f, StdDuration::from_secs(600));
    let keys = PgIdempotency::new(f.pool.clone());
    let day = StdDuration::from_secs(86_400);
    let claim = async |key: &str, lease: StdDuration| {
        let scope =
            KeyScope { caller: "user:42".into(), method: "POST".into(), path: "/p".into(), key: key.into() };
        match keys.claim(&scope, &[7; 32], lease, day).await.expect("claim") {
            Claimed::Run(claim) => claim,
            other => panic!("{key}: {other:?}"),
        }
    };
    let text = |body: String| Some(Entry::Answer(Answer { status: 200, body: body.into_bytes() }));
    let cause = |receipt| Cause { correlation_id: "t".into(), receipt: Some(receipt) };
    let reserved = move |claim| {
        cause(Receipt::new(claim, move |r: &Reserved| {
            text(format!("reserved {}", r.reservation.id.as_str()))
        }))
    };
    let used = move |claim| {
        cause(Receipt::new(claim, move |c: &Confirmed| text(format!("used {}", c.reservation.id.as_str()))))
    };
    let released = move |claim| {
        cause(Receipt::new(claim, move |r: &Released| {
            text(format!("released {}", r.reservation.id.as_str()))
        }))
    };
    let stored = async |key: &str| {
        word(&f, &format!(
        "SELECT convert_from(answer_body, 'UTF8') AS word FROM idempotency_keys WHERE idempotency_key = '{key}'"
    )).await
    };
    let ids = coupons(&f, 42, 3, SystemClock.now() + Duration::days(5)).await;

    let reserve = reserved(claim("reserve", day).await);
    checkout.reserve(&hold("R1", 42, ids[0], 50_000), reserve.clone()).await.expect("reserve");
    assert!(reserve.receipt.as_ref().is_some_and(Receipt::answered));
    assert_eq!(stored("reserve").await, "reserved R1");
    checkout.confirm(&payment("R1", "P1"), used(claim("confirm", day).await)).await.expect("confirm");
    assert_eq!(stored("confirm").await, "used R1");
    checkout.reserve(&hold("R2", 43, ids[1], 50_000), "t".into()).await.expect("reserve");
    let release = released(claim("release", day).await);
    checkout.release(&id("R2"), None, CancelReason::Released, release).await.expect("release");
    assert_eq!(stored("release").await, "released R2");

    // The first holder's lease lapses at once and a retry takes the key over (token 2).
    let lost = claim("taken", StdDuration::ZERO).await;
    let taker = claim("taken", day).await;
    assert_eq!((lost.token, taker.token), (1, 2));
    let refused = checkout.reserve(&hold("R3", 44, ids[2], 50_000), reserved(lost)).await;
    assert!(matches!(refused, Err(ReserveError::Store(StoreError::Unavailable(_)))), "{refused:?}");
    assert_eq!(
        word(&f, &format!("SELECT status AS word FROM coupon_issues WHERE id = {}", ids[2])).await,
        "ISSUED"
    );
    checkout.reserve(&hold("R3", 44, ids[2], 50_000), reserved(taker)).await.expect("the taker's reserve");
    assert_eq!(stored("taken").await, "reserved R3");
}

/// Sets the fixture policy's stacking and budget (arranged with SQL).
async fn arrange_policy(f: &Fixture, stackable: bool, budget: Option<i64>) {
    let mut conn = f.db.connect().await;
    diesel::sql_query("UPDATE coupon_policies SET stackable = $1, budget_amount = $2 WHERE id = $3")
        .bind::<diesel::sql_types::Bool, _>(stackable)
        .bind::<diesel::sql_types::Nullable<BigInt>, _>(budget)
        .bind::<BigInt, _>(f.policy.id.get())
        .execute(&mut conn)
        .await
        .expect("arrange policy");
}

/// `n` concurrent reserves, one per coupon, all for `order` (or each for its own order when
/// `None`), at 50,000 each (a 5,000 discount): their answers.
async fn racing_reserves(
    f: &Fixture,
    rules: &CheckoutRules,
    ids: &[CouponId],
    first_user: i64,
    order_id: Option<&str>,
) -> Vec<Result<(), ReserveError>> {
    let barrier = Arc::new(Barrier::new(ids.len()));
    let tasks: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, &coupon)| {
            let checkout = Checkout::new(
                f.store.clone(),
                Arc::new(SystemClock),
                StdDuration::from_secs(600),
                rules.clone(),
            );
            let barrier = barrier.clone();
            let mut request = hold(&format!("S{i}"), first_user + i as i64, coupon, 50_000);
            if let Some(shared) = order_id {
                request.order_id = Some(order(shared));
            }
            tokio::spawn(async move {
                barrier.wait().await;
                checkout.reserve(&request, "race".into()).await.map(drop)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task"));
    }
    answers
}

fn count(answers: &[Result<(), ReserveError>], pick: impl Fn(&Result<(), ReserveError>) -> bool) -> usize {
    answers.iter().filter(|a| pick(a)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_reserves_of_different_exclusive_coupons_on_one_order_leave_one_live() {
    let f = fixture().await;
    let ids = coupons(&f, 100, 10, SystemClock.now() + Duration::days(5)).await;
    let answers = racing_reserves(&f, &CheckoutRules::default(), &ids, 100, Some("ONE-ORDER")).await;
    assert_eq!(count(&answers, Result::is_ok), 1, "{answers:?}");
    assert_eq!(count(&answers, |a| matches!(a, Err(ReserveError::NotStackable(_)))), 9, "{answers:?}");
    let live = "SELECT count(*)::text AS word FROM coupon_reservations \
                WHERE order_id = 'ONE-ORDER' AND status IN ('PENDING', 'CONFIRMED')";
    assert_eq!(word(&f, live).await, "1");
    assert_eq!(
        word(&f, "SELECT count(*)::text AS word FROM coupon_issues WHERE status = 'RESERVED'").await,
        "1"
    );
    // Released, the order takes another coupon.
    let checkout = checkout(&f, StdDuration::from_secs(600));
    let winner =
        word(&f, "SELECT reservation_id AS word FROM coupon_reservations WHERE status = 'PENDING'").await;
    checkout.release(&id(&winner), None, CancelReason::Released, "t".into()).await.expect("release");
    assert_eq!(word(&f, STACK_AUDIT).await, "ONE-ORDER 0 0");
    let mut next = hold("NEXT", 100, ids[0], 50_000);
    next.order_id = Some(order("ONE-ORDER"));
    checkout.reserve(&next, "t".into()).await.expect("the order is free again");
    assert_eq!(word(&f, STACK_AUDIT).await, "ONE-ORDER 1 0");
}

#[tokio::test]
async fn a_late_payment_does_not_rejoin_an_order_another_coupon_took() {
    let f = fixture().await;
    let ids = coupons(&f, 42, 2, SystemClock.now() + Duration::days(5)).await;
    let short = checkout(&f, StdDuration::from_millis(1));
    let long = checkout(&f, StdDuration::from_secs(600));
    short.reserve(&hold("A1", 42, ids[0], 50_000), "t".into()).await.expect("reserve");
    tokio::time::sleep(StdDuration::from_millis(20)).await;
    assert_eq!(run(&jobs(&f, "pod-a"), JobName::ReservationTimeout).await, 1);
    let mut other = hold("A2", 43, ids[1], 50_000);
    other.order_id = Some(order("ORDER-A1"));
    long.reserve(&other, "t".into()).await.expect("the order is free after the timeout");
    assert!(matches!(long.confirm(&payment("A1", "P1"), "t".into()).await, Err(ConfirmError::Expired)));
    assert_eq!(word(&f, STACK_AUDIT).await, "ORDER-A1 1 0");
    assert_eq!(
        word(&f, &format!("SELECT status AS word FROM coupon_issues WHERE id = {}", ids[0])).await,
        "ISSUED",
        "the late payment took nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stackable_coupons_share_an_order_up_to_the_limit() {
    let f = fixture().await;
    arrange_policy(&f, true, None).await;
    let ids = coupons(&f, 100, 10, SystemClock.now() + Duration::days(5)).await;
    let rules = CheckoutRules { max_per_order: 3, ..CheckoutRules::default() };
    let answers = racing_reserves(&f, &rules, &ids, 100, Some("SHARED")).await;
    assert_eq!(count(&answers, Result::is_ok), 3, "{answers:?}");
    assert_eq!(count(&answers, |a| matches!(a, Err(ReserveError::NotStackable(_)))), 7, "{answers:?}");
    assert_eq!(word(&f, STACK_AUDIT).await, "SHARED 0 3");
}

/// Every order's stack as `order exclusive stackable`, after checking that its counters are
/// those of the order's live reservations (a broken count fails the cast).
const STACK_AUDIT: &str = "SELECT string_agg(k.order_id || ' ' || k.exclusive || ' ' || k.stackable, ',' ORDER BY k.order_id) \
        || CASE WHEN bool_and(coalesce(l.e, 0) = k.exclusive AND coalesce(l.s, 0) = k.stackable) \
                     AND count(k.order_id) = count(*) THEN '' \
                ELSE ('stack out of step: ' || string_agg(k.order_id, ','))::int::text END AS word \
     FROM order_stacks k \
     FULL JOIN (SELECT order_id, count(*) FILTER (WHERE order_exclusive) AS e, \
                       count(*) FILTER (WHERE NOT order_exclusive) AS s \
                FROM coupon_reservations WHERE status IN ('PENDING', 'CONFIRMED') AND order_exclusive IS NOT NULL \
                GROUP BY order_id) l USING (order_id)";

/// The sum of the discounts of the policy's live reservations, and the policy's running sum.
const BUDGET_AUDIT: &str = "SELECT (SELECT coalesce(sum(r.discount_amount), 0) FROM coupon_reservations r \
        JOIN coupon_issues c ON c.id = r.coupon_id WHERE c.policy_id = p.id AND r.status IN ('PENDING', 'CONFIRMED'))::text \
        || ' ' || p.budget_used::text AS word FROM coupon_policies p";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_reserves_against_a_budget_for_ten_never_exceed_it() {
    let f = fixture().await;
    arrange_policy(&f, false, Some(50_000)).await;
    let ids = coupons(&f, 100, 100, SystemClock.now() + Duration::days(5)).await;
    let answers = racing_reserves(&f, &CheckoutRules::default(), &ids, 100, None).await;
    assert_eq!(count(&answers, Result::is_ok), 10, "ten discounts of 5,000 fit 50,000");
    assert_eq!(count(&answers, |a| matches!(a, Err(ReserveError::BudgetExhausted(_)))), 90, "{answers:?}");
    assert_eq!(word(&f, BUDGET_AUDIT).await, "50000.00 50000.00");
    let thresholds = "SELECT count(*)::text AS word FROM outbox WHERE event_type = 'COUPON_BUDGET_THRESHOLD'";
    assert_eq!(word(&f, thresholds).await, "2", "80 and 100 percent, once each");

    // Releases give room back; a use, a timeout and an order cancellation keep the sum true.
    let checkout = checkout(&f, StdDuration::from_secs(600));
    let live: Vec<String> = word(
        &f,
        "SELECT string_agg(reservation_id, ',' ORDER BY reservation_id) AS word FROM coupon_reservations WHERE status = 'PENDING'",
    )
    .await
    .split(',')
    .map(str::to_owned)
    .collect();
    for reservation in &live[..3] {
        checkout.release(&id(reservation), None, CancelReason::Released, "t".into()).await.expect("release");
    }
    assert_eq!(word(&f, BUDGET_AUDIT).await, "35000.00 35000.00");
    checkout.confirm(&payment(&live[3], "P1"), "t".into()).await.expect("use");
    checkout
        .cancel_order(ids_of(&f, &live[3]).await, &order(&format!("ORDER-{}", live[3])), "t".into())
        .await
        .expect("restore");
    assert_eq!(word(&f, BUDGET_AUDIT).await, "30000.00 30000.00");
    let free: Vec<CouponId> = ids_free(&f).await;
    let short = Checkout::new(
        f.store.clone(),
        Arc::new(SystemClock),
        StdDuration::from_millis(1),
        CheckoutRules::default(),
    );
    short
        .reserve(&hold("T1", owner_of(&f, free[0]).await, free[0], 50_000), "t".into())
        .await
        .expect("reserve");
    assert_eq!(word(&f, BUDGET_AUDIT).await, "35000.00 35000.00");
    tokio::time::sleep(StdDuration::from_millis(20)).await;
    assert_eq!(run(&jobs(&f, "pod-a"), JobName::ReservationTimeout).await, 1);
    assert_eq!(word(&f, BUDGET_AUDIT).await, "30000.00 30000.00");
    // Back at 100 percent: no threshold is announced twice, and the next hold is refused.
    for (i, &coupon) in free[1..6].iter().enumerate() {
        let reserved = checkout
            .reserve(&hold(&format!("U{i}"), owner_of(&f, coupon).await, coupon, 50_000), "t".into())
            .await;
        assert_eq!(reserved.is_ok(), i < 4, "{i}: {reserved:?}");
    }
    assert_eq!(word(&f, BUDGET_AUDIT).await, "50000.00 50000.00");
    assert_eq!(word(&f, thresholds).await, "2");
    word(&f, STACK_AUDIT).await;
}

/// The coupon a reservation holds.
async fn ids_of(f: &Fixture, reservation: &str) -> CouponId {
    let coupon = word(
        f,
        &format!(
            "SELECT coupon_id::text AS word FROM coupon_reservations WHERE reservation_id = '{reservation}'"
        ),
    )
    .await;
    CouponId::new(coupon.parse().expect("id")).expect("coupon id")
}

/// Coupons nobody holds or used.
async fn ids_free(f: &Fixture) -> Vec<CouponId> {
    word(f, "SELECT string_agg(id::text, ',' ORDER BY id) AS word FROM coupon_issues WHERE status = 'ISSUED'")
        .await
        .split(',')
        .map(|id| CouponId::new(id.parse().expect("id")).expect("coupon id"))
        .collect()
}

async fn owner_of(f: &Fixture, coupon: CouponId) -> i64 {
    word(f, &format!("SELECT user_id::text AS word FROM coupon_issues WHERE id = {coupon}"))
        .await
        .parse()
        .expect("user")
}
