-- The same rules for reservation ids and unique codes, checked without a bounded repetition.
-- PostgreSQL's regex engine expands `{1,50}` into fifty copies of the bracket: checking
-- '^[A-Za-z0-9_-]{1,50}$' cost 3.2 µs a value against 0.2 µs for "not empty, no character outside
-- the bracket", and a CHECK runs at every insert and at every update of the row, so each reserve
-- and each confirmation paid it (about 6 % of PostgreSQL's CPU in a checkout burst). The column
-- types keep bounding the length (VARCHAR(50), VARCHAR(30)), so the rules are unchanged.
-- Adding a check scans its table once while holding its writes (a cheap check per row).
ALTER TABLE coupon_reservations
    DROP CONSTRAINT coupon_reservations_reservation_id_check,
    ADD CONSTRAINT chk_reservation_id CHECK (reservation_id <> '' AND reservation_id !~ '[^A-Za-z0-9_-]');

ALTER TABLE coupon_codes
    DROP CONSTRAINT coupon_codes_code_check,
    ADD CONSTRAINT chk_code CHECK (length(code) >= 8 AND code !~ '[^A-Z0-9]');
