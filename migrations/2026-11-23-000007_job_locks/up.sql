-- Cluster-wide scheduler job locks (SPEC §7), in the style of ShedLock: a job runs only on the
-- scheduler pod that moved locked_until into the future, and a crashed holder's lock lapses.
CREATE TABLE job_locks (
    job_name     VARCHAR(64)  PRIMARY KEY,
    locked_until TIMESTAMPTZ  NOT NULL,
    locked_at    TIMESTAMPTZ  NOT NULL,
    locked_by    VARCHAR(255) NOT NULL,
    -- Last completed run, for operators and the "job has not run" alert.
    last_finished_at TIMESTAMPTZ NULL,
    last_outcome     VARCHAR(255) NULL
);
