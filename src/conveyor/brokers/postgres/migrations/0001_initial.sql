-- 0001_initial: the queue, dead letters, idempotency keys, results, progress, heartbeats,
-- schedules and the event log. {schema} is the broker's schema (the URL's ?prefix=).
-- Times are the server's (timestamptz, now()): no worker clock decides a lease or a due time.

-- Publish order within a priority (retries go to the back with a new number).
CREATE SEQUENCE {schema}.task_seq;
-- Fencing: every claim stamps a token no earlier claim had; a settlement must bring it.
CREATE SEQUENCE {schema}.lease_tokens;

-- One row per waiting (ready or delayed) or leased message; an ack or a dead-letter
-- deletes it. A waiting row is claimable once available_at <= now().
CREATE TABLE {schema}.tasks (
    task_id          text PRIMARY KEY,
    queue            text NOT NULL,
    body             bytea NOT NULL,
    priority         integer NOT NULL DEFAULT 0,
    seq              bigint NOT NULL DEFAULT nextval('{schema}.task_seq'),
    state            text NOT NULL CHECK (state IN ('waiting', 'leased')),
    available_at     timestamptz NOT NULL DEFAULT now(),
    enqueued_at      timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    lease_owner      text,
    lease_token      bigint,
    lease_expires_at timestamptz,
    key              text,
    key_ttl          double precision NOT NULL DEFAULT 0,
    -- attempts in a row whose lease expired unsettled (the worker died)
    crashes          integer NOT NULL DEFAULT 0,
    -- abort() asked while leased: the worker cancels it, a later claim ends it unrun
    abort_requested  boolean NOT NULL DEFAULT false
) WITH (
    -- a queue table churns: vacuum it after 1% dead rows, not the default 20%
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02
);
-- The claim order: per queue, highest priority first, then publish order.
CREATE INDEX tasks_claim ON {schema}.tasks (queue, priority DESC, seq) WHERE state = 'waiting';
CREATE INDEX tasks_due ON {schema}.tasks (available_at) WHERE state = 'waiting';
CREATE INDEX tasks_leased ON {schema}.tasks (lease_expires_at) WHERE state = 'leased';

CREATE SEQUENCE {schema}.dead_letter_seq;
-- Messages that failed for good, with the bytes they arrived as; newest first by seq.
CREATE TABLE {schema}.dead_letters (
    id        text PRIMARY KEY,
    queue     text NOT NULL,
    body      bytea NOT NULL,
    reason    text NOT NULL,
    attempts  integer NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now(),
    seq       bigint NOT NULL DEFAULT nextval('{schema}.dead_letter_seq')
);
CREATE INDEX dead_letters_order ON {schema}.dead_letters (seq);
CREATE INDEX dead_letters_queue ON {schema}.dead_letters (queue, seq);

-- Idempotency keys (the primary key is the unique index that admits one task per key):
-- expires_at is NULL while the task is waiting or leased, then end time + key_ttl.
CREATE TABLE {schema}.idempotency_keys (
    key        text PRIMARY KEY,
    task_id    text NOT NULL,
    expires_at timestamptz
);
CREATE INDEX idempotency_keys_expiry ON {schema}.idempotency_keys (expires_at)
    WHERE expires_at IS NOT NULL;

-- Encoded results; expires_at NULL keeps one forever.
CREATE TABLE {schema}.results (
    task_id    text PRIMARY KEY,
    data       bytea NOT NULL,
    expires_at timestamptz
);
CREATE INDEX results_expiry ON {schema}.results (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE {schema}.progress (
    task_id    text PRIMARY KEY,
    data       bytea NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX progress_expiry ON {schema}.progress (expires_at);

CREATE SEQUENCE {schema}.worker_seq;
-- Worker and scheduler heartbeats: info is a msgpack-encoded WorkerInfo.
CREATE TABLE {schema}.workers (
    worker_id  text PRIMARY KEY,
    info       bytea NOT NULL,
    expires_at timestamptz NOT NULL,
    seq        bigint NOT NULL DEFAULT nextval('{schema}.worker_seq')
);

CREATE TABLE {schema}.schedules (
    schedule_id text PRIMARY KEY,
    spec        bytea NOT NULL
);

-- The capped event log; ids order the records (gaps are possible, order is kept).
CREATE TABLE {schema}.events (
    id     bigserial PRIMARY KEY,
    record bytea NOT NULL
);
