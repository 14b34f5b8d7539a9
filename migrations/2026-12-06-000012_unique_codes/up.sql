-- Unique single-use codes (SPEC §11.6). A CODE policy with code_mode UNIQUE has no coupon_code of
-- its own: its codes are rows here, each redeemed at most once.
ALTER TABLE coupon_policies
    ADD COLUMN code_mode VARCHAR(10) NOT NULL DEFAULT 'SHARED' CHECK (code_mode IN ('SHARED', 'UNIQUE')),
    DROP CONSTRAINT chk_policy_code_required,
    ADD CONSTRAINT chk_policy_code_required CHECK (
        (code_mode = 'SHARED' AND (distribution_type <> 'CODE' OR coupon_code IS NOT NULL))
        OR (code_mode = 'UNIQUE' AND distribution_type = 'CODE' AND coupon_code IS NULL)
    );

-- One row per generated code. The primary key holds uniqueness across all policies. No foreign
-- key to coupon_policies (policies are never deleted): a generation job inserts a million rows,
-- and a per-row referential check would cost it a third of its time.
CREATE TABLE coupon_codes (
    code        VARCHAR(30) PRIMARY KEY CHECK (code ~ '^[A-Z0-9]{8,30}$'),
    policy_id   BIGINT      NOT NULL,
    status      VARCHAR(10) NOT NULL DEFAULT 'AVAILABLE' CHECK (status IN ('AVAILABLE', 'REDEEMED')),
    coupon_id   BIGINT      NULL,
    user_id     BIGINT      NULL,
    redeemed_at TIMESTAMPTZ NULL,
    CONSTRAINT chk_code_redeemed CHECK (
        (status = 'AVAILABLE' AND coupon_id IS NULL AND user_id IS NULL AND redeemed_at IS NULL)
        OR (status = 'REDEEMED' AND coupon_id IS NOT NULL AND user_id IS NOT NULL AND redeemed_at IS NOT NULL)
    )
);

-- Generation jobs: progress, and a lease so that a job whose runner died is taken over.
CREATE TABLE code_jobs (
    id          BIGSERIAL   PRIMARY KEY,
    policy_id   BIGINT      NOT NULL REFERENCES coupon_policies (id),
    total       INTEGER     NOT NULL CHECK (total BETWEEN 1 AND 10000000),
    generated   INTEGER     NOT NULL DEFAULT 0 CHECK (generated >= 0 AND generated <= total),
    prefix      VARCHAR(10) NOT NULL DEFAULT '' CHECK (prefix ~ '^[A-Z0-9]{0,10}$'),
    length      SMALLINT    NOT NULL CHECK (length BETWEEN 8 AND 20),
    state       VARCHAR(10) NOT NULL DEFAULT 'RUNNING' CHECK (state IN ('RUNNING', 'DONE', 'FAILED')),
    error       VARCHAR(500) NULL,
    lease_until TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    CONSTRAINT chk_code_job_done CHECK (state <> 'DONE' OR generated = total)
);
CREATE INDEX idx_code_jobs_running ON code_jobs (lease_until) WHERE state = 'RUNNING';
