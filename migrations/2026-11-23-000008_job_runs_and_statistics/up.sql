-- History of scheduler job runs (SPEC §7): one row per run that held the job's lock. Operators read
-- it to see what a job did, the "job has not run" alert reads its latest row, and the tests read it
-- to prove that two scheduler pods never run the same job at once.
CREATE TABLE job_runs (
    id          BIGSERIAL    PRIMARY KEY,
    job_name    VARCHAR(64)  NOT NULL,
    runner      VARCHAR(255) NOT NULL,
    -- SCHEDULE (cron tick) or MANUAL (POST /api/admin/jobs/{name}/run).
    trigger     VARCHAR(20)  NOT NULL CHECK (trigger IN ('SCHEDULE', 'MANUAL')),
    started_at  TIMESTAMPTZ  NOT NULL,
    finished_at TIMESTAMPTZ  NOT NULL,
    -- Rows the run changed (reservations timed out, coupons expired, days refreshed).
    affected    BIGINT       NOT NULL DEFAULT 0 CHECK (affected >= 0),
    outcome     VARCHAR(20)  NOT NULL CHECK (outcome IN ('SUCCEEDED', 'FAILED')),
    error       TEXT         NULL,

    CONSTRAINT chk_job_run_order CHECK (finished_at >= started_at)
);
CREATE INDEX idx_job_runs_job_started ON job_runs (job_name, started_at DESC);

-- The statistics job counts coupons per business day and hour by instant. Issue times grow with
-- the table's physical order, so a BRIN index finds a day's rows for almost no upkeep on the hot
-- issuing path; uses and expiries are rarer and get small partial B-trees.
CREATE INDEX idx_coupon_issues_issued_at_brin ON coupon_issues USING brin (issued_at);
CREATE INDEX idx_coupon_issues_used_at ON coupon_issues (used_at) WHERE used_at IS NOT NULL;
CREATE INDEX idx_coupon_issues_expired_at ON coupon_issues (expires_at) WHERE status = 'EXPIRED';
CREATE INDEX idx_coupon_reservations_reserved_at_brin ON coupon_reservations USING brin (reserved_at);
