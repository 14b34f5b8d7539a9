-- Stacking (SPEC §11.4) kept as one row of counters per order instead of an exclusion constraint
-- over slot ranges. The domain decides from the order's row; the statements that start and end
-- live reservations move its counters in the same statement, and this table's constraint is the
-- line no concurrent writer can cross: one non-stackable coupon, or at most `cap` stackable ones.
-- (The exclusion constraint's GiST index cost an entry and a search at every reserve and again at
-- every confirmation, whose status change is not a HOT update.)
CREATE TABLE order_stacks (
    order_id  VARCHAR(50) PRIMARY KEY,
    -- Live reservations of the order holding a non-stackable coupon.
    exclusive SMALLINT    NOT NULL,
    -- Live reservations of the order holding a stackable coupon.
    stackable SMALLINT    NOT NULL,
    -- The most stackable coupons the order may hold: COUPON_MAX_COUPONS_PER_ORDER as its latest
    -- hold was configured.
    cap       SMALLINT    NOT NULL,
    CONSTRAINT chk_order_stack CHECK (exclusive IN (0, 1) AND stackable BETWEEN 0 AND cap
                                      AND (exclusive = 0 OR stackable = 0))
);

-- What a reservation holds of its order: TRUE the whole order (a non-stackable coupon), FALSE one
-- of its stackable places, NULL nothing (reserved without an orderId).
ALTER TABLE coupon_reservations
    ADD COLUMN order_exclusive BOOLEAN NULL,
    ADD CONSTRAINT chk_reservation_order_share CHECK (order_exclusive IS NULL OR order_id IS NOT NULL);
UPDATE coupon_reservations SET order_exclusive = upper_inf(order_slots) WHERE order_slots IS NOT NULL;

-- Every order any reservation held a share of gets its row (a late confirmation may rejoin it).
-- The cap its holds were made under is not recorded: the default, or more when more are live;
-- the order's next hold writes the configured one.
INSERT INTO order_stacks (order_id, exclusive, stackable, cap)
SELECT order_id,
       count(*) FILTER (WHERE live AND order_exclusive),
       count(*) FILTER (WHERE live AND NOT order_exclusive),
       greatest(5, count(*) FILTER (WHERE live AND NOT order_exclusive))
FROM (SELECT order_id, order_exclusive, status IN ('PENDING', 'CONFIRMED') AS live
      FROM coupon_reservations WHERE order_exclusive IS NOT NULL) r
GROUP BY order_id;

ALTER TABLE coupon_reservations DROP CONSTRAINT ex_reservation_order_stack,
    DROP CONSTRAINT chk_reservation_order_slots, DROP COLUMN order_slots;
