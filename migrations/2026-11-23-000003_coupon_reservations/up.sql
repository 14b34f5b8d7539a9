-- Reservations (SPEC §4.4): the hold a checkout puts on a coupon, for both reserve and apply.
CREATE TABLE coupon_reservations (
    reservation_id  VARCHAR(50)   PRIMARY KEY CHECK (reservation_id ~ '^[A-Za-z0-9_-]{1,50}$'),
    coupon_id       BIGINT        NOT NULL REFERENCES coupon_issues (id),
    user_id         BIGINT        NOT NULL CHECK (user_id > 0),
    order_id        VARCHAR(50)   NULL,
    order_amount    NUMERIC(15,2) NOT NULL CHECK (order_amount > 0),
    -- Computed once at reserve time and honoured at confirmation.
    discount_amount NUMERIC(15,2) NOT NULL,
    status          VARCHAR(20)   NOT NULL DEFAULT 'PENDING'
        CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED', 'EXPIRED')),
    reserved_at     TIMESTAMPTZ   NOT NULL,
    expires_at      TIMESTAMPTZ   NOT NULL,
    payment_id      VARCHAR(100)  NULL,
    confirmed_at    TIMESTAMPTZ   NULL,
    -- Confirmed by a payment.completed that arrived after the reservation timed out (SPEC §4.4).
    late_confirmation BOOLEAN     NOT NULL DEFAULT FALSE,
    cancelled_at    TIMESTAMPTZ   NULL,
    cancel_reason   VARCHAR(50)   NULL,
    created_at      TIMESTAMPTZ   NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ   NOT NULL DEFAULT now(),

    CONSTRAINT chk_reservation_discount CHECK (discount_amount >= 0 AND discount_amount <= order_amount),
    CONSTRAINT chk_reservation_lifetime CHECK (expires_at > reserved_at),
    CONSTRAINT chk_reservation_confirmed CHECK (status <> 'CONFIRMED' OR confirmed_at IS NOT NULL)
);

-- At most one live reservation per coupon: one hold at a time, and one confirmed use at a time
-- (an order cancelled after payment cancels its reservation before the coupon is reusable).
CREATE UNIQUE INDEX uq_coupon_reservations_live
    ON coupon_reservations (coupon_id) WHERE status IN ('PENDING', 'CONFIRMED');
-- Reservation-timeout job.
CREATE INDEX idx_coupon_reservations_pending_expiry
    ON coupon_reservations (expires_at) WHERE status = 'PENDING';
-- order.cancelled carries couponId + orderId, not the reservation id.
CREATE INDEX idx_coupon_reservations_coupon_order ON coupon_reservations (coupon_id, order_id);
