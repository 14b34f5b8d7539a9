ALTER TABLE coupon_reservations DROP CONSTRAINT ex_reservation_order_stack,
    DROP CONSTRAINT chk_reservation_order_slots, DROP COLUMN order_slots;
ALTER TABLE coupon_policies DROP CONSTRAINT chk_policy_budget, DROP COLUMN budget_alerted,
    DROP COLUMN budget_used, DROP COLUMN budget_amount, DROP COLUMN stackable;
