-- Daily statistics (SPEC §7 statistics job): totals per business day plus hourly buckets.
-- Rebuilt idempotently from coupon_issues and coupon_reservations; never the source of truth.
CREATE TABLE daily_statistics (
    stat_date      DATE        PRIMARY KEY,
    total_issued   BIGINT      NOT NULL DEFAULT 0 CHECK (total_issued >= 0),
    total_used     BIGINT      NOT NULL DEFAULT 0 CHECK (total_used >= 0),
    total_reserved BIGINT      NOT NULL DEFAULT 0 CHECK (total_reserved >= 0),
    total_expired  BIGINT      NOT NULL DEFAULT 0 CHECK (total_expired >= 0),
    -- {"0": n, ..., "23": n}
    issue_by_hour  JSONB       NOT NULL DEFAULT '{}'::jsonb,
    usage_by_hour  JSONB       NOT NULL DEFAULT '{}'::jsonb,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
