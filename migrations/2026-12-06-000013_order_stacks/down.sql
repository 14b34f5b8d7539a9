ALTER TABLE coupon_reservations
    ADD COLUMN order_slots INT4RANGE NULL,
    ADD CONSTRAINT chk_reservation_order_slots
        CHECK (order_slots IS NULL OR (order_id IS NOT NULL AND lower(order_slots) >= 1));
-- Stackable reservations get distinct slots in the order of their reservation.
UPDATE coupon_reservations r SET order_slots = s.slots
FROM (SELECT reservation_id,
             CASE WHEN order_exclusive THEN '[1,)'::int4range
                  ELSE int4range(k::int, k::int + 1) END AS slots
      FROM (SELECT reservation_id, order_exclusive,
                   row_number() OVER (PARTITION BY order_id, order_exclusive, status IN ('PENDING', 'CONFIRMED')
                                      ORDER BY reserved_at, reservation_id) AS k
            FROM coupon_reservations WHERE order_exclusive IS NOT NULL) n) s
WHERE r.reservation_id = s.reservation_id;
ALTER TABLE coupon_reservations
    ADD CONSTRAINT ex_reservation_order_stack
        EXCLUDE USING gist ((hashtextextended(order_id, 0)) WITH =, order_slots WITH &&)
        WHERE (status IN ('PENDING', 'CONFIRMED') AND order_slots IS NOT NULL),
    DROP CONSTRAINT chk_reservation_order_share, DROP COLUMN order_exclusive;
DROP TABLE order_stacks;
