//! The schema alone rejects what SPEC §3 forbids, whatever code path writes the row: these tests
//! write SQL directly, bypassing every application check.

use coupon_testkit::TestDatabase;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

const POLICY: &str = "INSERT INTO coupon_policies \
    (id, coupon_name, discount_type, discount_value, distribution_type, max_issue_count, max_issue_per_user, valid_days, valid_from, valid_until) \
    VALUES (1, 'Launch', 'FIXED_AMOUNT', 1000, 'FIRST_COME', 1, 2, 30, now() - interval '1 day', now() + interval '1 day')";

async fn exec(conn: &mut AsyncPgConnection, sql: &str) -> Result<usize, String> {
    diesel::sql_query(sql).execute(conn).await.map_err(|e| e.to_string())
}

async fn setup() -> AsyncPgConnection {
    let db = TestDatabase::migrated().await;
    let mut conn = db.connect().await;
    exec(&mut conn, POLICY).await.expect("valid policy");
    conn
}

fn coupon(id: i64, user: i64, slot: i16, status: &str) -> String {
    format!(
        "INSERT INTO coupon_issues (id, policy_id, user_id, user_slot, status, issued_at, expires_at) \
         VALUES ({id}, 1, {user}, {slot}, '{status}', now(), now() + interval '30 days')"
    )
}

#[tokio::test]
async fn the_issue_counter_can_never_pass_the_cap() {
    let mut conn = setup().await;
    assert_eq!(exec(&mut conn, "UPDATE coupon_policies SET current_issue_count = 1").await, Ok(1));
    let oversell = exec(&mut conn, "UPDATE coupon_policies SET current_issue_count = 2").await;
    assert!(oversell.is_err_and(|e| e.contains("chk_policy_stock")));
}

#[tokio::test]
async fn a_user_slot_is_held_once_and_cancelled_coupons_free_it() {
    let mut conn = setup().await;
    exec(&mut conn, &coupon(1, 7, 1, "ISSUED")).await.expect("first coupon");
    let twice = exec(&mut conn, &coupon(2, 7, 1, "ISSUED")).await;
    assert!(twice.is_err_and(|e| e.contains("uq_coupon_issues_user_slot")));
    exec(&mut conn, "UPDATE coupon_issues SET status = 'CANCELLED' WHERE id = 1").await.expect("revoke");
    assert_eq!(exec(&mut conn, &coupon(3, 7, 1, "ISSUED")).await, Ok(1), "a cancelled coupon frees its slot");
}

#[tokio::test]
async fn a_coupon_has_at_most_one_live_reservation() {
    let mut conn = setup().await;
    exec(&mut conn, &coupon(1, 7, 1, "ISSUED")).await.expect("coupon");
    let reserve = |id: &str| {
        format!(
            "INSERT INTO coupon_reservations (reservation_id, coupon_id, user_id, order_amount, discount_amount, reserved_at, expires_at) \
             VALUES ('{id}', 1, 7, 50000, 1000, now(), now() + interval '10 minutes')"
        )
    };
    exec(&mut conn, &reserve("R-1")).await.expect("first hold");
    let second = exec(&mut conn, &reserve("R-2")).await;
    assert!(second.is_err_and(|e| e.contains("uq_coupon_reservations_live")));
    exec(&mut conn, "UPDATE coupon_reservations SET status = 'EXPIRED'").await.expect("expire");
    assert_eq!(exec(&mut conn, &reserve("R-2")).await, Ok(1), "an ended hold frees the coupon");
}

#[tokio::test]
async fn policy_rules_are_check_constraints() {
    let mut conn = setup().await;
    let cases = [
        ("discount_value = 150, discount_type = 'PERCENTAGE'", "chk_policy_discount_value"),
        ("discount_value = 0", "chk_policy_discount_value"),
        ("valid_from = valid_until", "chk_policy_window"),
        ("distribution_type = 'CODE'", "chk_policy_code_required"),
        ("coupon_code = 'lower'", "coupon_policies_coupon_code_check"),
        ("distribution_type = 'LOTTERY'", "coupon_policies_distribution_type_check"),
        ("max_issue_per_user = 0", "coupon_policies_max_issue_per_user_check"),
    ];
    for (set, constraint) in cases {
        let result = exec(&mut conn, &format!("UPDATE coupon_policies SET {set}")).await;
        assert!(result.as_ref().is_err_and(|e| e.contains(constraint)), "{set}: {result:?}");
    }
}

#[tokio::test]
async fn reservation_ids_are_one_to_fifty_safe_characters() {
    let mut conn = setup().await;
    let reserve = |held: i64, id: &str| {
        format!(
            "INSERT INTO coupon_reservations (reservation_id, coupon_id, user_id, order_amount, discount_amount, reserved_at, expires_at) \
             VALUES ('{id}', {held}, 7, 50000, 1000, now(), now() + interval '10 minutes')"
        )
    };
    for (held, id) in [(1, "r"), (2, "Az09_-"), (3, &"x".repeat(50))] {
        let slot = i16::try_from(held).expect("a small slot");
        exec(&mut conn, &coupon(held, 7, slot, "ISSUED")).await.expect("coupon");
        assert_eq!(exec(&mut conn, &reserve(held, id)).await, Ok(1), "{id:?} is a valid id");
        exec(&mut conn, "UPDATE coupon_reservations SET status = 'CANCELLED'").await.expect("end the hold");
    }
    for id in ["", "with space", "dot.ted", "ümlaut", "tab\t", "semi;colon"] {
        let refused = exec(&mut conn, &reserve(1, id)).await;
        assert!(refused.as_ref().is_err_and(|e| e.contains("chk_reservation_id")), "{id:?}: {refused:?}");
    }
    let long = exec(&mut conn, &reserve(1, &"x".repeat(51))).await;
    assert!(long.as_ref().is_err_and(|e| e.contains("too long")), "{long:?}");
    let renamed =
        exec(&mut conn, "UPDATE coupon_reservations SET reservation_id = 'r 1' WHERE reservation_id = 'r'")
            .await;
    assert!(renamed.is_err_and(|e| e.contains("chk_reservation_id")), "updates are checked too");
}

#[tokio::test]
async fn unique_codes_are_eight_to_thirty_capitals_and_digits() {
    let mut conn = setup().await;
    let code = |code: &str| format!("INSERT INTO coupon_codes (code, policy_id) VALUES ('{code}', 1)");
    for valid in ["ABCD1234", &"Z".repeat(30)] {
        assert_eq!(exec(&mut conn, &code(valid)).await, Ok(1), "{valid:?} is a valid code");
    }
    for invalid in ["ABC1234", "abcd1234", "ABCD-1234", "ABCD 1234", "ÄBCD1234", ""] {
        let refused = exec(&mut conn, &code(invalid)).await;
        assert!(refused.as_ref().is_err_and(|e| e.contains("chk_code")), "{invalid:?}: {refused:?}");
    }
    let long = exec(&mut conn, &code(&"Z".repeat(31))).await;
    assert!(long.as_ref().is_err_and(|e| e.contains("too long")), "{long:?}");
}
