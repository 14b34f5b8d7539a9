-- Leases of the event-worker pods (SPEC §6): who runs the outbox relay, who consumes which topic
-- partition, and which pods are alive. A lease is held while its holder renews it; a pod that dies
-- stops renewing and its leases lapse, so another pod takes over within one lease period.
CREATE TABLE worker_leases (
    name        VARCHAR(300) PRIMARY KEY,
    holder      VARCHAR(255) NOT NULL,
    acquired_at TIMESTAMPTZ  NOT NULL,
    expires_at  TIMESTAMPTZ  NOT NULL,

    CONSTRAINT chk_worker_lease_period CHECK (expires_at >= acquired_at)
);
