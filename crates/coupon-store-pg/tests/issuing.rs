//! The issuing transaction under concurrency, against the real PostgreSQL: whatever the
//! interleaving, no oversell, nobody above their per-user limit, and one outbox row per coupon.

use coupon_domain::clock::{Clock, SystemClock};
use std::sync::Arc;

use chrono::Duration;
use coupon_domain::codes::{CodeFormat, CodeStore, Entropy, JobState, UniqueCodes};
use coupon_domain::consume::DeadLetter;
use coupon_domain::coupon::{IssuedCoupon, expires_at};
use coupon_domain::discount::{DiscountRule, DiscountType};
use coupon_domain::event::{CouponEvent, EncodedEvent, EventContext, EventEncoder};
use coupon_domain::id::UserId;
use coupon_domain::issue::{CouponStore, IssueCommand, IssueError};
use coupon_domain::policy::{
    CodeMode, CouponCode, DistributionType, IssuanceWindow, NewPolicy, NotIssuable, Policy,
};
use coupon_domain::policy_store::PolicyStore;
use coupon_domain::port::StoreError;
use coupon_store_pg::codes::PgCodeStore;
use coupon_store_pg::issue::PgCouponStore;
use coupon_store_pg::policy::PgPolicyStore;
use coupon_store_pg::pool::{PgConfig, PgPool};
use coupon_store_pg::tls::PgTls;
use coupon_testkit::TestDatabase;
use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use tokio::sync::Barrier;

/// A minimal encoder: these tests look at rows, not at payloads.
struct RowsOnly;

impl EventEncoder for RowsOnly {
    fn encode(&self, event: &CouponEvent<'_>, _: &EventContext) -> anyhow::Result<EncodedEvent> {
        let CouponEvent::Issued { coupon, .. } = event else { anyhow::bail!("only issuing is tested here") };
        Ok(EncodedEvent {
            event_id: uuid_like(coupon.id.get()),
            topic: "coupon.issued".into(),
            key: coupon.id.to_string(),
            event_type: "COUPON_ISSUED",
            payload: "{}".into(),
        })
    }

    fn dead_letter(&self, _: &DeadLetter<'_>) -> anyhow::Result<EncodedEvent> {
        anyhow::bail!("no records are consumed here")
    }
}

fn uuid_like(n: i64) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

struct Fixture {
    db: TestDatabase,
    policies: PgPolicyStore,
    coupons: Arc<PgCouponStore>,
    codes: PgCodeStore,
}

async fn fixture() -> Fixture {
    let db = TestDatabase::migrated().await;
    let pool = PgPool::new(&PgConfig {
        connection_string: db.connection_string(),
        max_size: 16,
        timeout: std::time::Duration::from_secs(30),
        tls: PgTls::default(),
    })
    .expect("pool");
    Fixture {
        policies: PgPolicyStore::new(pool.clone()),
        codes: PgCodeStore::new(pool.clone()),
        coupons: Arc::new(PgCouponStore::new(pool, Arc::new(RowsOnly)).expect("coupon store")),
        db,
    }
}

async fn policy(f: &Fixture, distribution: DistributionType, cap: Option<u32>, per_user: u16) -> Policy {
    let mode = CodeMode::Shared;
    policy_in_mode(f, distribution, cap, per_user, mode).await
}

async fn policy_in_mode(
    f: &Fixture,
    distribution: DistributionType,
    cap: Option<u32>,
    per_user: u16,
    code_mode: CodeMode,
) -> Policy {
    let now = SystemClock.now();
    let new = NewPolicy {
        name: "Burst".into(),
        code: None,
        description: None,
        discount: DiscountRule::new(DiscountType::FixedAmount, Decimal::from(1000), None, None)
            .expect("rule"),
        distribution,
        max_issue_count: cap,
        max_issue_per_user: per_user,
        valid_days: 30,
        window: IssuanceWindow::new(now - Duration::hours(1), now + Duration::hours(1)).expect("window"),
        is_active: true,
        code_mode,
        stackable: false,
        budget_amount: None,
    };
    f.policies.create(new, now, None).await.expect("create policy")
}

async fn issue(coupons: &PgCouponStore, policy: &Policy, user: i64) -> Result<IssuedCoupon, IssueError> {
    let now = SystemClock.now();
    let context = EventContext::new("test".into(), now);
    coupons
        .issue(IssueCommand {
            policy,
            channel: policy.distribution,
            user_id: UserId::new(user).expect("user"),
            issued_at: now,
            expires_at: expires_at(now, policy.valid_days, chrono_tz::Tz::UTC),
            context: &context,
            code: None,
        })
        .await
}

/// Runs `requests` (user ids) at once, released together by a barrier.
async fn burst(f: &Fixture, policy: &Policy, users: Vec<i64>) -> Vec<Result<IssuedCoupon, IssueError>> {
    let barrier = Arc::new(Barrier::new(users.len()));
    let tasks: Vec<_> = users
        .into_iter()
        .map(|user| {
            let (coupons, policy, barrier) = (f.coupons.clone(), policy.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                issue(&coupons, &policy, user).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("task"));
    }
    results
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    let mut conn = db.connect().await;
    diesel::sql_query(sql).get_result::<Count>(&mut conn).await.expect(sql).n
}

fn tally(results: &[Result<IssuedCoupon, IssueError>]) -> (usize, usize, usize) {
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let sold_out =
        results.iter().filter(|r| matches!(r, Err(IssueError::NotIssuable(NotIssuable::SoldOut)))).count();
    let already = results.iter().filter(|r| matches!(r, Err(IssueError::AlreadyIssued))).count();
    (ok, sold_out, already)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_users_racing_for_a_hundred_coupons_get_exactly_a_hundred() {
    let f = fixture().await;
    let p = policy(&f, DistributionType::FirstCome, Some(100), 1).await;
    let results = burst(&f, &p, (1..=1000).collect()).await;
    assert_eq!(tally(&results), (100, 900, 0), "every request is a coupon or SOLD_OUT");
    assert_eq!(count(&f.db, "SELECT count(*) AS n FROM coupon_issues").await, 100);
    assert_eq!(count(&f.db, "SELECT current_issue_count::bigint AS n FROM coupon_policies").await, 100);
    assert_eq!(
        count(&f.db, "SELECT count(*) AS n FROM outbox").await,
        100,
        "one event per coupon, none for refusals"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_user_firing_in_parallel_gets_exactly_their_limit() {
    for limit in [1u16, 3] {
        let f = fixture().await;
        let p = policy(&f, DistributionType::Download, None, limit).await;
        let results = burst(&f, &p, vec![42; 10]).await;
        assert_eq!(tally(&results), (usize::from(limit), 0, 10 - usize::from(limit)), "limit {limit}");
        assert_eq!(
            count(&f.db, "SELECT count(*) AS n FROM coupon_issues WHERE user_id = 42").await,
            i64::from(limit)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_users_times_three_on_a_cap_of_fifty() {
    let f = fixture().await;
    let p = policy(&f, DistributionType::FirstCome, Some(50), 1).await;
    let users: Vec<i64> = (1..=100).flat_map(|u| [u, u, u]).collect();
    let results = burst(&f, &p, users).await;
    let (ok, _, _) = tally(&results);
    assert_eq!(ok, 50);
    assert_eq!(count(&f.db, "SELECT count(*) AS n FROM coupon_issues").await, 50);
    assert_eq!(
        count(&f.db, "SELECT count(*) AS n FROM (SELECT user_id FROM coupon_issues GROUP BY user_id HAVING count(*) > 1) t").await,
        0,
        "nobody above the limit"
    );
    assert!(results.iter().all(|r| matches!(
        r,
        Ok(_) | Err(IssueError::AlreadyIssued | IssueError::NotIssuable(NotIssuable::SoldOut))
    )));
}

#[tokio::test]
async fn the_database_refuses_what_the_policy_forbids_at_issue_time() {
    let f = fixture().await;
    let p = policy(&f, DistributionType::Download, Some(10), 1).await;
    // The caller's snapshot says active; the stored policy was deactivated meanwhile.
    let mut conn = f.db.connect().await;
    diesel::sql_query("UPDATE coupon_policies SET is_active = false")
        .execute(&mut conn)
        .await
        .expect("deactivate");
    assert!(matches!(issue(&f.coupons, &p, 1).await, Err(IssueError::NotIssuable(NotIssuable::Inactive))));
    assert_eq!(count(&f.db, "SELECT count(*) AS n FROM coupon_issues").await, 0, "rolled back");
    assert_eq!(count(&f.db, "SELECT count(*) AS n FROM outbox").await, 0, "no event for a refused issue");
}

#[tokio::test]
async fn an_unlimited_policy_issues_and_counts() {
    let f = fixture().await;
    let p = policy(&f, DistributionType::Download, None, 2).await;
    for user in [1, 1, 2] {
        issue(&f.coupons, &p, user).await.expect("issued");
    }
    assert!(matches!(issue(&f.coupons, &p, 1).await, Err(IssueError::AlreadyIssued)));
    assert_eq!(count(&f.db, "SELECT current_issue_count::bigint AS n FROM coupon_policies").await, 3);
    let slots = count(&f.db, "SELECT max(user_slot)::bigint AS n FROM coupon_issues WHERE user_id = 1").await;
    assert_eq!(slots, 2);
}

/// Answers go back through a courier on the caller's thread. A thread whose runtime is gone (its
/// courier with it) still gets the answers of its next runtime's requests.
#[test]
fn a_thread_gets_its_answers_after_its_first_runtime_is_gone() {
    let runtime = || tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let first = runtime();
    let (f, policy) = first.block_on(async {
        let f = fixture().await;
        let policy = policy(&f, DistributionType::FirstCome, Some(10), 1).await;
        issue(&f.coupons, &policy, 1).await.expect("issued on the first runtime");
        (f, policy)
    });
    drop(first);
    runtime().block_on(async {
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), issue(&f.coupons, &policy, 2))
            .await
            .expect("answered");
        answer.expect("issued on the second runtime");
        assert_eq!(count(&f.db, "SELECT count(*) AS n FROM coupon_issues").await, 2);
    });
}

/// SPEC §11.6: a unique code issues one coupon, once, whoever races for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_redemptions_of_twenty_codes_issue_twenty_coupons() {
    let f = fixture().await;
    let policy = policy_in_mode(&f, DistributionType::Code, None, 1, CodeMode::Unique).await;
    let now = SystemClock.now();
    let format = CodeFormat::new(Some("T"), None).expect("format");
    let job = f
        .codes
        .create_job(policy.id, 20, &format, (now, now + Duration::seconds(30)), None)
        .await
        .expect("job");
    let codes: Vec<String> = (0..20).map(|i| format.code(&[i; 16])).collect();
    let done = f.codes.insert_codes(&job, &codes, now + Duration::seconds(30)).await.expect("codes");
    assert_eq!(done.generated, 20);
    // A stale runner (progress read before) commits nothing.
    let stale = f.codes.insert_codes(&job, &[format.code(&[99; 16])], now).await.expect("stale");
    assert_eq!(stale.generated, 20, "the job moved on without the stale runner");

    let barrier = Arc::new(Barrier::new(200));
    let tasks: Vec<_> = (0..200)
        .map(|i: usize| {
            let (coupons, barrier, policy) = (f.coupons.clone(), barrier.clone(), policy.clone());
            let code = CouponCode::parse(&codes[i % 20]).expect("code");
            tokio::spawn(async move {
                barrier.wait().await;
                let now = SystemClock.now();
                let context = EventContext::new("race".into(), now);
                let user = UserId::new(i64::try_from(i).expect("i") + 1).expect("user");
                let mut command = IssueCommand::plan(
                    &policy,
                    DistributionType::Code,
                    user,
                    now,
                    chrono_tz::Tz::UTC,
                    &context,
                )
                .expect("issuable");
                command.code = Some(&code);
                coupons.issue(command).await
            })
        })
        .collect();
    let (mut issued, mut redeemed) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => issued += 1,
            Err(IssueError::CodeRedeemed) => redeemed += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((issued, redeemed), (20, 180));
    assert_eq!(count(&f.db, "SELECT count(*) AS n FROM coupon_issues").await, 20);
    assert_eq!(
        count(
            &f.db,
            "SELECT count(*) AS n FROM coupon_codes k JOIN coupon_issues c ON c.id = k.coupon_id \
             AND c.user_id = k.user_id WHERE k.status = 'REDEEMED'"
        )
        .await,
        20,
        "each code names the coupon it issued"
    );
    assert_eq!(count(&f.db, "SELECT current_issue_count::bigint AS n FROM coupon_policies").await, 20);
}

/// Bytes from a counter: distinct codes without the operating system (the test needs no secrecy).
struct Counter(std::sync::atomic::AtomicU64);

impl Entropy for Counter {
    fn fill(&self, buf: &mut [u8]) -> Result<(), StoreError> {
        for chunk in buf.chunks_mut(CodeFormat::BYTES) {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            chunk.copy_from_slice(&u128::from(n).to_le_bytes()[..chunk.len()]);
        }
        Ok(())
    }
}

/// A job whose runner died (its lease lapsed) is taken over where it stopped and finished.
#[tokio::test]
async fn a_stalled_code_job_is_taken_over_and_finished() {
    let f = fixture().await;
    let policy = policy_in_mode(&f, DistributionType::Code, None, 1, CodeMode::Unique).await;
    let past = SystemClock.now() - Duration::minutes(5);
    let format = CodeFormat::new(None, None).expect("format");
    let job = f.codes.create_job(policy.id, 120_000, &format, (past, past), None).await.expect("job");
    let first: Vec<String> = (0..1_000u16)
        .map(|i| {
            format.code(&[i.to_le_bytes()[0], i.to_le_bytes()[1], 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7])
        })
        .collect();
    let started = f.codes.insert_codes(&job, &first, past).await.expect("first chunk");
    assert_eq!(started.generated, 1_000);

    let codes = UniqueCodes::new(
        Arc::new(f.codes.clone()),
        Arc::new(f.policies.clone()),
        Arc::new(Counter(std::sync::atomic::AtomicU64::new(1))),
        Arc::new(SystemClock),
    );
    assert_eq!(codes.resume_stalled().await.expect("resume"), 1);
    let done = codes.job(policy.id, job.id).await.expect("read").expect("job");
    assert_eq!((done.state, done.generated), (JobState::Done, 120_000));
    assert_eq!(count(&f.db, "SELECT count(*) AS n FROM coupon_codes").await, 120_000);
    assert_eq!(codes.resume_stalled().await.expect("again"), 0, "nothing left to take over");
}
