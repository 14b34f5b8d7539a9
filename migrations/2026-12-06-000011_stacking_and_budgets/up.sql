-- Stacking (SPEC §11.4) and spend budgets (SPEC §11.5). The domain decides; these constraints are
-- the line no concurrent writer can cross.

-- The order stack's exclusion constraint compares order ids with `=` inside a GiST index.
CREATE EXTENSION IF NOT EXISTS btree_gist;

ALTER TABLE coupon_policies
    -- A stackable coupon may share an order with other stackable ones.
    ADD COLUMN stackable      BOOLEAN       NOT NULL DEFAULT FALSE,
    -- NULL = no budget. Only ever raised.
    ADD COLUMN budget_amount  NUMERIC(15,2) NULL CHECK (budget_amount > 0),
    -- Sum of the discounts of the policy's live reservations (PENDING, CONFIRMED), kept by the
    -- statements that start and end them; written only while budget_amount is set.
    ADD COLUMN budget_used    NUMERIC(15,2) NOT NULL DEFAULT 0 CHECK (budget_used >= 0),
    -- The highest budget threshold (percent) already announced by coupon.budget-threshold.
    ADD COLUMN budget_alerted SMALLINT      NOT NULL DEFAULT 0 CHECK (budget_alerted BETWEEN 0 AND 100),
    ADD CONSTRAINT chk_policy_budget CHECK (budget_amount IS NULL OR budget_used <= budget_amount);

-- The slots of its order a live reservation occupies: [k, k+1) for the k-th stackable coupon,
-- [1, ∞) for a non-stackable one (it overlaps every slot). NULL for a reservation without an order.
ALTER TABLE coupon_reservations
    ADD COLUMN order_slots INT4RANGE NULL,
    ADD CONSTRAINT chk_reservation_order_slots
        CHECK (order_slots IS NULL OR (order_id IS NOT NULL AND lower(order_slots) >= 1)),
    -- Two live reservations of one order never share a slot: one non-stackable coupon, or
    -- stackable ones in distinct slots (the domain hands out at most COUPON_MAX_COUPONS_PER_ORDER).
    -- The order is keyed by its 64-bit hash: GiST searches integers several times faster than
    -- text. Two orders whose hashes collide (one chance in 2^64 per pair) would only refuse each
    -- other's coupons, never let a stack through.
    ADD CONSTRAINT ex_reservation_order_stack
        EXCLUDE USING gist ((hashtextextended(order_id, 0)) WITH =, order_slots WITH &&)
        WHERE (status IN ('PENDING', 'CONFIRMED') AND order_slots IS NOT NULL);
