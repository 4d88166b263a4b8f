-- 0004_flow: flow control (Capability.FLOW, conveyor.flow), on the server's clock.

-- A token bucket per key: the tokens it held at updated_at (refilled on each take).
CREATE TABLE {schema}.flow_buckets (
    key        text PRIMARY KEY,
    tokens     double precision NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Concurrency permits: one row per holder of a semaphore's permit, until its lease ends.
-- Takers of one semaphore are serialised by a transaction-level advisory lock on its key.
CREATE TABLE {schema}.flow_permits (
    key        text NOT NULL,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (key, holder)
);

-- Marks: a debounced key's latest task, a deferred task's reason; gone at expires_at.
CREATE TABLE {schema}.flow_marks (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX flow_marks_expiry ON {schema}.flow_marks (expires_at);
