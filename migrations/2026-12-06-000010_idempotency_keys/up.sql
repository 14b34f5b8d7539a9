-- Idempotency keys (SPEC §11.1): one row per (caller, method, path, key). A request claims its
-- row before it runs; the transaction of its effect writes the answer (or, for a request made of
-- several transactions, one part per transaction) into the row, guarded by the claim token, so
-- that the effect and its answer commit together. A retry replays the stored answer.
CREATE TABLE idempotency_keys (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- 'user:<id>', 'admin:<sha-256 of the token>' or 'anonymous'; never a token itself.
    caller          VARCHAR(100) NOT NULL,
    method          VARCHAR(10)  NOT NULL,
    path            VARCHAR(500) NOT NULL,
    idempotency_key VARCHAR(255) NOT NULL,
    -- SHA-256 of the request body as canonical JSON.
    request_hash    BYTEA        NOT NULL,
    -- Which claim runs the request now, counted up by each takeover (a fencing token); a claim
    -- whose holder died lapses at leased_until.
    claim_token     BIGINT       NOT NULL,
    leased_until    TIMESTAMPTZ  NOT NULL,
    created_at      TIMESTAMPTZ  NOT NULL,
    expires_at      TIMESTAMPTZ  NOT NULL,
    answer_status   SMALLINT,
    answer_body     BYTEA,
    answered_at     TIMESTAMPTZ,
    -- What the committed transactions of a request of several did so far (direct issue).
    parts           BYTEA[]      NOT NULL DEFAULT '{}',

    CONSTRAINT uq_idempotency_scope UNIQUE (caller, method, path, idempotency_key),
    CONSTRAINT chk_idempotency_answer CHECK (
        (answer_status IS NULL) = (answer_body IS NULL) AND (answer_status IS NULL) = (answered_at IS NULL)),
    CONSTRAINT chk_idempotency_status CHECK (answer_status IS NULL OR answer_status BETWEEN 200 AND 499),
    CONSTRAINT chk_idempotency_period CHECK (expires_at > created_at)
);

-- The scheduler prunes expired keys oldest first.
CREATE INDEX idx_idempotency_keys_expiry ON idempotency_keys (expires_at);
