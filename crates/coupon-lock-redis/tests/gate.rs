//! The first-come gate against the real Redis.

use coupon_domain::clock::{Clock, SystemClock};
use std::sync::Arc;
use std::time::Duration;

use coupon_domain::discount::{DiscountRule, DiscountType};
use coupon_domain::gate::{GateDecision, StockGate};
use coupon_domain::id::{PolicyId, UserId};
use coupon_domain::policy::{DistributionType, IssuanceWindow, Policy};
use coupon_lock_redis::gate::RedisStockGate;
use coupon_lock_redis::pool::{RedisConfig, RedisPool, RedisTarget};
use coupon_testkit::{redis_node, unique_suffix};
use rust_decimal::Decimal;

fn gate() -> RedisStockGate {
    let pool = RedisPool::new(&RedisConfig {
        target: RedisTarget::Node(redis_node()),
        tls: None,
        username: None,
        password: None,
        max_size: 16,
        timeout: Duration::from_secs(5),
        key_prefix: format!("test:{}:", unique_suffix()),
    })
    .expect("pool");
    RedisStockGate::new(pool)
}

fn policy(cap: Option<u32>, issued: u32, per_user: u16) -> Policy {
    let now = SystemClock.now();
    Policy {
        id: PolicyId::new(7).expect("id"),
        name: "Burst".into(),
        code: None,
        description: None,
        discount: DiscountRule::new(DiscountType::FixedAmount, Decimal::from(1000), None, None)
            .expect("rule"),
        distribution: DistributionType::FirstCome,
        max_issue_count: cap,
        current_issue_count: issued,
        max_issue_per_user: per_user,
        valid_days: 30,
        window: IssuanceWindow::new(now - chrono::Duration::hours(1), now + chrono::Duration::hours(1))
            .expect("window"),
        is_active: true,
        code_mode: coupon_domain::policy::CodeMode::Shared,
        stackable: false,
        budget_amount: None,
        version: 0,
        created_at: now,
        updated_at: now,
    }
}

fn user(n: i64) -> UserId {
    UserId::new(n).expect("user")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admits_exactly_the_stock_under_concurrency() {
    let gate = Arc::new(gate());
    let p = Arc::new(policy(Some(100), 0, 1));
    let tasks: Vec<_> = (1..=500)
        .map(|u| {
            let (gate, p) = (gate.clone(), p.clone());
            tokio::spawn(async move { gate.admit(&p, user(u)).await.expect("redis") })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        match t.await.expect("task") {
            GateDecision::Admitted => admitted += 1,
            GateDecision::SoldOut => {}
            GateDecision::AlreadyHolding => panic!("distinct users"),
        }
    }
    assert_eq!(admitted, 100);
}

#[tokio::test]
async fn a_user_at_their_limit_is_turned_away_and_units_come_back() {
    let gate = gate();
    let p = policy(Some(2), 0, 1);
    assert_eq!(gate.admit(&p, user(1)).await.ok(), Some(GateDecision::Admitted));
    assert_eq!(gate.admit(&p, user(1)).await.ok(), Some(GateDecision::AlreadyHolding));
    assert_eq!(gate.admit(&p, user(2)).await.ok(), Some(GateDecision::Admitted));
    assert_eq!(gate.admit(&p, user(3)).await.ok(), Some(GateDecision::SoldOut));
    // PostgreSQL refused user 2 for another reason: the unit and their place come back.
    gate.give_back(p.id, user(2)).await.expect("give back");
    assert_eq!(gate.admit(&p, user(3)).await.ok(), Some(GateDecision::Admitted));
    assert_eq!(gate.admit(&p, user(2)).await.ok(), Some(GateDecision::SoldOut));
}

#[tokio::test]
async fn an_emptied_gate_is_rebuilt_from_the_stores_numbers() {
    let gate = gate();
    let before = policy(Some(10), 0, 1);
    assert_eq!(gate.admit(&before, user(1)).await.ok(), Some(GateDecision::Admitted));
    gate.forget(before.id).await.expect("forget");
    // PostgreSQL now says 9 of 10 are issued: one unit is left whatever the gate knew before.
    let after = policy(Some(10), 9, 1);
    assert_eq!(gate.admit(&after, user(2)).await.ok(), Some(GateDecision::Admitted));
    assert_eq!(gate.admit(&after, user(3)).await.ok(), Some(GateDecision::SoldOut));
    gate.mark_sold_out(after.id).await.expect("sold out");
    assert_eq!(gate.admit(&after, user(4)).await.ok(), Some(GateDecision::SoldOut));
}

#[tokio::test]
async fn unlimited_stock_only_dedupes() {
    let gate = gate();
    let p = policy(None, 0, 2);
    for _ in 0..2 {
        assert_eq!(gate.admit(&p, user(5)).await.ok(), Some(GateDecision::Admitted));
    }
    assert_eq!(gate.admit(&p, user(5)).await.ok(), Some(GateDecision::AlreadyHolding));
    assert_eq!(gate.admit(&p, user(6)).await.ok(), Some(GateDecision::Admitted));
}

#[tokio::test]
async fn a_raised_cap_grows_the_stock_and_an_older_cap_changes_nothing() {
    let gate = gate();
    let before = policy(Some(1), 0, 1);
    assert_eq!(gate.admit(&before, user(1)).await.ok(), Some(GateDecision::Admitted));
    assert_eq!(gate.admit(&before, user(2)).await.ok(), Some(GateDecision::SoldOut));
    // The cap went from 1 to 3: whoever knows it opens two more units.
    let raised = policy(Some(3), 1, 1);
    assert_eq!(gate.admit(&raised, user(2)).await.ok(), Some(GateDecision::Admitted));
    // A caller still holding the old cap neither shrinks nor re-grows the stock.
    assert_eq!(gate.admit(&before, user(3)).await.ok(), Some(GateDecision::Admitted));
    assert_eq!(gate.admit(&raised, user(4)).await.ok(), Some(GateDecision::SoldOut));
}

#[tokio::test]
async fn a_sold_out_gate_lists_its_holders_and_its_mark_moves_when_stock_can_come_back() {
    let gate = gate();
    let p = policy(Some(3), 0, 2);
    assert!(gate.sold_out_snapshot(&p).await.expect("redis").is_none(), "an empty gate");
    for u in [1, 1, 2] {
        assert_eq!(gate.admit(&p, user(u)).await.ok(), Some(GateDecision::Admitted));
    }
    assert_eq!(gate.admit(&p, user(3)).await.ok(), Some(GateDecision::SoldOut));
    let snapshot = gate.sold_out_snapshot(&p).await.expect("redis").expect("sold out");
    assert_eq!(snapshot.holders, [user(1)], "only users at their limit of two are holders");
    assert_eq!(gate.sold_out_mark(p.id).await.expect("redis"), Some(snapshot.mark.clone()));

    // A unit comes back and is taken again: the stock is 0 again, the mark is not the same.
    gate.give_back(p.id, user(2)).await.expect("give back");
    assert_eq!(gate.sold_out_mark(p.id).await.expect("redis"), None, "stock is back");
    assert_eq!(gate.admit(&p, user(3)).await.ok(), Some(GateDecision::Admitted));
    let returned = gate.sold_out_mark(p.id).await.expect("redis").expect("sold out again");
    assert_ne!(returned, snapshot.mark);

    // A raised cap, taken up at once, moves the mark too.
    let raised = policy(Some(4), 3, 2);
    assert_eq!(gate.admit(&raised, user(4)).await.ok(), Some(GateDecision::Admitted));
    let after_raise = gate.sold_out_mark(p.id).await.expect("redis").expect("sold out again");
    assert_ne!(after_raise, returned);

    gate.forget(p.id).await.expect("forget");
    assert_eq!(gate.sold_out_mark(p.id).await.expect("redis"), None, "a forgotten gate");
}

#[tokio::test]
async fn a_large_sold_out_gate_lists_every_holder_across_scan_pages() {
    let gate = gate();
    let p = policy(Some(2500), 0, 1);
    for u in 1..=2500 {
        assert_eq!(gate.admit(&p, user(u)).await.ok(), Some(GateDecision::Admitted));
    }
    assert_eq!(gate.admit(&p, user(2501)).await.ok(), Some(GateDecision::SoldOut));
    let snapshot = gate.sold_out_snapshot(&p).await.expect("redis").expect("sold out");
    let distinct: std::collections::HashSet<_> = snapshot.holders.iter().copied().collect();
    assert_eq!(distinct.len(), 2500);
    assert!((1..=2500).all(|u| distinct.contains(&user(u))));
}

/// Admits made together go to Redis as one batch (on a current-thread runtime the second is queued
/// before the batcher runs); the script decides them in order, a repeated user included.
#[tokio::test]
async fn one_batch_decides_its_requests_in_order() {
    let gate = gate();
    let p = policy(Some(3), 0, 1);
    let (a, b, c, d) = tokio::join!(
        gate.admit(&p, user(1)),
        gate.admit(&p, user(1)),
        gate.admit(&p, user(2)),
        gate.admit(&p, user(3)),
    );
    let answers = [a, b, c, d].map(|answer| answer.expect("redis"));
    assert_eq!(
        answers,
        [
            GateDecision::Admitted,
            GateDecision::AlreadyHolding,
            GateDecision::Admitted,
            GateDecision::Admitted
        ]
    );
    let (e, f) = tokio::join!(gate.admit(&p, user(4)), gate.admit(&p, user(2)));
    assert_eq!([e.ok(), f.ok()], [Some(GateDecision::SoldOut), Some(GateDecision::AlreadyHolding)]);

    let twice = policy(Some(10), 0, 2);
    // The same policy id with another cap: start from an empty gate.
    gate.forget(twice.id).await.expect("forget");
    let (g, h, i) =
        tokio::join!(gate.admit(&twice, user(5)), gate.admit(&twice, user(5)), gate.admit(&twice, user(5)));
    assert_eq!(
        [g.ok(), h.ok(), i.ok()],
        [Some(GateDecision::Admitted), Some(GateDecision::Admitted), Some(GateDecision::AlreadyHolding)]
    );
}

/// A batch whose requests carry different snapshots of the policy (its cap was raised meanwhile)
/// counts the stock by the newest one.
#[tokio::test]
async fn a_batch_counts_by_its_newest_policy_snapshot() {
    let gate = gate();
    let before = policy(Some(1), 0, 1);
    let mut raised = policy(Some(3), 0, 1);
    raised.version = before.version + 1;
    let (a, b, c) = tokio::join!(
        gate.admit(&before, user(1)),
        gate.admit(&raised, user(2)),
        gate.admit(&before, user(3))
    );
    assert_eq!(
        [a.ok(), b.ok(), c.ok()],
        [Some(GateDecision::Admitted), Some(GateDecision::Admitted), Some(GateDecision::Admitted)]
    );
    assert_eq!(gate.admit(&raised, user(4)).await.ok(), Some(GateDecision::SoldOut));
}

/// A request dropped while its admit is queued or in flight (the client went away) leaves the
/// stock as it was: the unit goes to the next user.
#[tokio::test]
async fn a_request_that_leaves_takes_no_stock() {
    let gate = gate();
    let p = policy(Some(1), 0, 1);
    {
        let mut leaving = std::pin::pin!(gate.admit(&p, user(1)));
        // Queue the admit and let the batcher send it, then drop the request before its answer.
        tokio::select! {
            biased;
            _ = &mut leaving => panic!("answered before the batcher ran"),
            () = tokio::task::yield_now() => {}
        }
    }
    assert_eq!(gate.admit(&p, user(2)).await.ok(), Some(GateDecision::Admitted));
    assert_eq!(gate.admit(&p, user(3)).await.ok(), Some(GateDecision::SoldOut));
}
