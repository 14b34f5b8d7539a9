ALTER TABLE coupon_codes
    DROP CONSTRAINT chk_code,
    ADD CONSTRAINT coupon_codes_code_check CHECK (code ~ '^[A-Z0-9]{8,30}$');
ALTER TABLE coupon_reservations
    DROP CONSTRAINT chk_reservation_id,
    ADD CONSTRAINT coupon_reservations_reservation_id_check CHECK (reservation_id ~ '^[A-Za-z0-9_-]{1,50}$');
