-- Coupon policies: the campaign rules coupons are issued under (SPEC §4.1).
-- Every rule that can be checked on one row is a CHECK constraint, so no code path (API, admin
-- tooling, a hand-written UPDATE) can store a policy the domain would reject.
CREATE TABLE coupon_policies (
    id                   BIGSERIAL PRIMARY KEY,
    coupon_name          VARCHAR(100)  NOT NULL CHECK (length(btrim(coupon_name)) > 0),
    -- Stored upper-case so that lookups (trimmed, upper-cased input) hit the unique index.
    coupon_code          VARCHAR(50)   NULL CHECK (coupon_code = upper(coupon_code) AND length(coupon_code) > 0),
    description          VARCHAR(1000) NULL,
    discount_type        VARCHAR(20)   NOT NULL CHECK (discount_type IN ('FIXED_AMOUNT', 'PERCENTAGE')),
    -- Money columns are wider than the guide's DECIMAL(10,2): order amounts above 10^8 exist.
    discount_value       NUMERIC(15,2) NOT NULL,
    minimum_order_amount NUMERIC(15,2) NULL CHECK (minimum_order_amount >= 0),
    max_discount_amount  NUMERIC(15,2) NULL CHECK (max_discount_amount > 0),
    distribution_type    VARCHAR(20)   NOT NULL
        CHECK (distribution_type IN ('CODE', 'DOWNLOAD', 'FIRST_COME', 'EVENT', 'DIRECT')),
    -- NULL = unlimited. The total cap; it never counts down.
    max_issue_count      INTEGER       NULL CHECK (max_issue_count >= 0),
    -- Coupons issued so far; only ever incremented, by a conditional UPDATE.
    current_issue_count  INTEGER       NOT NULL DEFAULT 0 CHECK (current_issue_count >= 0),
    max_issue_per_user   INTEGER       NOT NULL DEFAULT 1 CHECK (max_issue_per_user BETWEEN 1 AND 1000),
    -- Lifetime of an issued coupon in days.
    valid_days           INTEGER       NOT NULL CHECK (valid_days >= 1),
    -- The issuance window.
    valid_from           TIMESTAMPTZ   NOT NULL,
    valid_until          TIMESTAMPTZ   NOT NULL,
    is_active            BOOLEAN       NOT NULL DEFAULT TRUE,
    -- Optimistic-lock version for admin updates.
    version              BIGINT        NOT NULL DEFAULT 0,
    created_at           TIMESTAMPTZ   NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ   NOT NULL DEFAULT now(),

    CONSTRAINT chk_policy_discount_value CHECK (
        (discount_type = 'FIXED_AMOUNT' AND discount_value > 0)
        OR (discount_type = 'PERCENTAGE' AND discount_value > 0 AND discount_value <= 100)
    ),
    CONSTRAINT chk_policy_window CHECK (valid_from < valid_until),
    -- The last line of defence against overselling: whatever the application does, the counter
    -- can never pass the cap.
    CONSTRAINT chk_policy_stock CHECK (max_issue_count IS NULL OR current_issue_count <= max_issue_count),
    CONSTRAINT chk_policy_code_required CHECK (distribution_type <> 'CODE' OR coupon_code IS NOT NULL)
);

-- Codes are unique among policies (DUPLICATE_COUPON_CODE); this index also serves code lookups.
CREATE UNIQUE INDEX uq_coupon_policies_code ON coupon_policies (coupon_code) WHERE coupon_code IS NOT NULL;
-- Admin listing of live policies (guide §9.1 idx_active_policies).
CREATE INDEX idx_coupon_policies_active ON coupon_policies (is_active, valid_until);
