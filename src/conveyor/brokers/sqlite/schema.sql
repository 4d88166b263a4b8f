-- The SQLite broker's tables. Every statement is idempotent (IF NOT EXISTS), so any number
-- of processes may run this script at connect; PRAGMA user_version records the version.
-- Times are Unix seconds (REAL) from the embedding process's clock.

-- One row per queued, delayed or leased message. A row leaves this table when it is acked
-- or dead-lettered. state is 'ready' (claimable now), 'delayed' (available_at in the
-- future) or 'leased' (owned by lease_owner under lease_token until lease_expires_at).
CREATE TABLE IF NOT EXISTS tasks (
    task_id          TEXT PRIMARY KEY,
    queue            TEXT NOT NULL,
    body             BLOB NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    seq              INTEGER NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('ready', 'delayed', 'leased')),
    available_at     REAL NOT NULL DEFAULT 0,
    enqueued_at      REAL NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_token      INTEGER,
    lease_expires_at REAL,
    key              TEXT,
    key_ttl          REAL NOT NULL DEFAULT 0,
    -- attempts in a row whose lease expired unsettled (the worker died)
    crashes          INTEGER NOT NULL DEFAULT 0,
    -- 1 once abort() was asked while the task was leased: its worker cancels it and a
    -- later claim (after a reap or retry) ends it as aborted without running it
    abort_requested  INTEGER NOT NULL DEFAULT 0,
    -- the workflow it belongs to (abort_workflow finds the tasks held by it)
    workflow         TEXT
);

-- The claim order: highest priority first, then publish order (seq), per queue.
CREATE INDEX IF NOT EXISTS tasks_ready ON tasks (queue, priority DESC, seq)
    WHERE state = 'ready';
CREATE INDEX IF NOT EXISTS tasks_delayed ON tasks (available_at)
    WHERE state = 'delayed';
CREATE INDEX IF NOT EXISTS tasks_leased ON tasks (lease_expires_at)
    WHERE state = 'leased';
CREATE INDEX IF NOT EXISTS tasks_workflow ON tasks (workflow)
    WHERE workflow IS NOT NULL;

-- Monotonic counters shared by every process: 'seq' orders messages within a priority,
-- 'lease_token' fences each claim (a larger token for every claim, never reused).
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters (name, value) VALUES ('seq', 0), ('lease_token', 0);

-- Messages that failed for good, with the bytes they arrived as. Newest first by rowid.
CREATE TABLE IF NOT EXISTS dead_letters (
    id        TEXT PRIMARY KEY,
    queue     TEXT NOT NULL,
    body      BLOB NOT NULL,
    reason    TEXT NOT NULL,
    attempts  INTEGER NOT NULL,
    failed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_queue ON dead_letters (queue);

-- Idempotency keys: expires_at is NULL while the task is queued or running, then
-- finish time + key_ttl.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key        TEXT PRIMARY KEY,
    task_id    TEXT NOT NULL,
    expires_at REAL
);
CREATE INDEX IF NOT EXISTS idempotency_keys_expiry ON idempotency_keys (expires_at)
    WHERE expires_at IS NOT NULL;

-- Encoded results; expires_at NULL keeps a result forever.
CREATE TABLE IF NOT EXISTS results (
    task_id    TEXT PRIMARY KEY,
    data       BLOB NOT NULL,
    expires_at REAL
);
CREATE INDEX IF NOT EXISTS results_expiry ON results (expires_at)
    WHERE expires_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS progress (
    task_id    TEXT PRIMARY KEY,
    data       BLOB NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS progress_expiry ON progress (expires_at);

-- Worker heartbeats: info is a msgpack-encoded WorkerInfo.
CREATE TABLE IF NOT EXISTS workers (
    worker_id  TEXT PRIMARY KEY,
    info       BLOB NOT NULL,
    expires_at REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS schedules (
    schedule_id TEXT PRIMARY KEY,
    spec        BLOB NOT NULL
);

-- Task outcomes counted by the workers (Counters): totals since counting began, kept for
-- ever, and per minute (minute = its start, Unix seconds), kept BrokerOptions.counts_kept.
CREATE TABLE IF NOT EXISTS task_counts (
    task   TEXT NOT NULL,
    queue  TEXT NOT NULL,
    status TEXT NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (task, queue, status)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS task_count_minutes (
    minute INTEGER NOT NULL,
    task   TEXT NOT NULL,
    queue  TEXT NOT NULL,
    status TEXT NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (minute, task, queue, status)
) WITHOUT ROWID;

-- Workflows (Capability.WORKFLOWS). A record is kept ttl seconds after it started, then
-- after it ended (expires_at); info is the core's description, opaque here.
CREATE TABLE IF NOT EXISTS workflows (
    workflow_id TEXT PRIMARY KEY,
    state       TEXT NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'aborted')),
    created_at  REAL NOT NULL,
    finished_at REAL NOT NULL DEFAULT 0,
    ttl         REAL NOT NULL,
    info        BLOB NOT NULL,
    failed_task TEXT NOT NULL DEFAULT '',
    expires_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS workflows_created ON workflows (created_at);
CREATE INDEX IF NOT EXISTS workflows_expiry ON workflows (expires_at);

-- A group's barrier: how many members joined (failed ones too), its size (NULL until the
-- producer sealed it), whether its callback was published, and the callback itself. Kept
-- ttl seconds after its last change.
CREATE TABLE IF NOT EXISTS barriers (
    barrier_id        TEXT PRIMARY KEY,
    workflow          TEXT NOT NULL,
    size              INTEGER,
    joined            INTEGER NOT NULL DEFAULT 0,
    failed            INTEGER NOT NULL DEFAULT 0,
    first_failure     INTEGER,
    fired             INTEGER NOT NULL DEFAULT 0,
    partial           INTEGER NOT NULL DEFAULT 0,
    ttl               REAL NOT NULL,
    expires_at        REAL NOT NULL,
    callback_id       TEXT NOT NULL,
    callback_queue    TEXT NOT NULL,
    callback_body     BLOB NOT NULL,
    callback_priority INTEGER NOT NULL DEFAULT 0,
    callback_key      TEXT,
    callback_key_ttl  REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS barriers_expiry ON barriers (expires_at);

-- Each member's outcome (an encoded Result), by its index in its group.
CREATE TABLE IF NOT EXISTS barrier_slots (
    barrier_id TEXT NOT NULL,
    idx        INTEGER NOT NULL,
    data       BLOB NOT NULL,
    PRIMARY KEY (barrier_id, idx)
) WITHOUT ROWID;

-- Flow control (conveyor.flow), shared by every process on the file. A token bucket per
-- key: the tokens it held at updated_at (refilled on each take).
CREATE TABLE IF NOT EXISTS flow_buckets (
    key        TEXT PRIMARY KEY,
    tokens     REAL NOT NULL,
    updated_at REAL NOT NULL
);

-- Concurrency permits: one row per holder of a semaphore's permit, until its lease ends.
CREATE TABLE IF NOT EXISTS flow_permits (
    key        TEXT NOT NULL,
    holder     TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (key, holder)
);

-- Marks: a debounced key's latest task, a deferred task's reason; gone at expires_at.
CREATE TABLE IF NOT EXISTS flow_marks (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS flow_marks_expiry ON flow_marks (expires_at);
