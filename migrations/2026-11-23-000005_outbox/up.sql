-- Transactional outbox (SPEC §3.2): every state change inserts its event here in the same
-- transaction; the relay in event-worker publishes rows to Kafka and marks them.
CREATE TABLE outbox (
    id           BIGSERIAL   PRIMARY KEY,
    event_id     UUID        NOT NULL UNIQUE,
    topic        VARCHAR(249) NOT NULL,
    -- Kafka record key (the coupon id); per-key order is id order.
    event_key    VARCHAR(100) NOT NULL,
    event_type   VARCHAR(50) NOT NULL,
    -- The complete envelope as it goes on the wire. TEXT, not JSONB, so the bytes published are
    -- exactly the bytes written.
    payload      TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ NULL,
    attempts     INTEGER     NOT NULL DEFAULT 0,
    last_error   TEXT        NULL
);

-- The relay's work queue: unpublished rows in id order.
CREATE INDEX idx_outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
-- Pruning of published rows.
CREATE INDEX idx_outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;
