-- Issued coupons (SPEC §4.2): one row per coupon held by a user.
CREATE TABLE coupon_issues (
    id             BIGSERIAL PRIMARY KEY,
    policy_id      BIGINT        NOT NULL REFERENCES coupon_policies (id),
    user_id        BIGINT        NOT NULL CHECK (user_id > 0),
    -- Which of the user's max_issue_per_user places for this policy the coupon occupies
    -- (1..=max_issue_per_user). With the unique index below this enforces the per-user limit in
    -- the database for any limit, not only for a limit of one.
    user_slot      SMALLINT      NOT NULL DEFAULT 1 CHECK (user_slot >= 1),
    status         VARCHAR(20)   NOT NULL DEFAULT 'ISSUED'
        CHECK (status IN ('ISSUED', 'RESERVED', 'USED', 'EXPIRED', 'CANCELLED')),
    -- The reservation holding (RESERVED) or having used (USED) the coupon.
    reservation_id VARCHAR(50)   NULL,
    order_id       VARCHAR(50)   NULL,
    -- Discount granted by the use that consumed the coupon; sums into totalSavedAmount.
    discount_amount NUMERIC(15,2) NULL CHECK (discount_amount >= 0),
    issued_at      TIMESTAMPTZ   NOT NULL,
    expires_at     TIMESTAMPTZ   NOT NULL,
    reserved_at    TIMESTAMPTZ   NULL,
    used_at        TIMESTAMPTZ   NULL,
    version        BIGINT        NOT NULL DEFAULT 0,
    created_at     TIMESTAMPTZ   NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ   NOT NULL DEFAULT now(),

    CONSTRAINT chk_issue_lifetime CHECK (expires_at > issued_at),
    CONSTRAINT chk_issue_reserved_has_reservation CHECK (
        status <> 'RESERVED' OR (reservation_id IS NOT NULL AND reserved_at IS NOT NULL)
    ),
    CONSTRAINT chk_issue_used_has_use CHECK (status <> 'USED' OR used_at IS NOT NULL)
);

-- Per-user limit (guide §9.2 idx_unique_user_policy, generalised to limits above one):
-- cancelled coupons free their place.
CREATE UNIQUE INDEX uq_coupon_issues_user_slot
    ON coupon_issues (policy_id, user_id, user_slot) WHERE status <> 'CANCELLED';
-- Wallet: a user's coupons newest first, keyset-paged by id, optionally by status.
CREATE INDEX idx_coupon_issues_user ON coupon_issues (user_id, id);
CREATE INDEX idx_coupon_issues_user_status ON coupon_issues (user_id, status, id);
-- Expiry job and "expiring soon": live coupons by expiry date.
CREATE INDEX idx_coupon_issues_live_expiry
    ON coupon_issues (expires_at) WHERE status IN ('ISSUED', 'RESERVED');
-- Policy statistics.
CREATE INDEX idx_coupon_issues_policy_status ON coupon_issues (policy_id, status);
