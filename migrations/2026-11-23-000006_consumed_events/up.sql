-- Exactly-once effect for consumed events (SPEC §3.3): the effect, the dedupe record and the
-- partition offset commit in one transaction.

-- Next offset to read per topic partition. Kafka's own group offsets are not used (rskafka has no
-- consumer groups), so Postgres is the only record of consumer progress.
CREATE TABLE consumer_offsets (
    topic       VARCHAR(249) NOT NULL,
    partition   INTEGER      NOT NULL CHECK (partition >= 0),
    next_offset BIGINT       NOT NULL CHECK (next_offset >= 0),
    updated_at  TIMESTAMPTZ  NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);

-- Events whose effect has been applied, by producer eventId; a redelivered event finds its row
-- and changes nothing.
CREATE TABLE processed_events (
    topic         VARCHAR(249) NOT NULL,
    event_id      VARCHAR(100) NOT NULL,
    partition     INTEGER      NOT NULL,
    record_offset BIGINT       NOT NULL,
    outcome       VARCHAR(40)  NOT NULL,
    processed_at  TIMESTAMPTZ  NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, event_id)
);

-- Pruning of old dedupe records.
CREATE INDEX idx_processed_events_processed_at ON processed_events (processed_at);
