-- 0003_workflows: workflows (Capability.WORKFLOWS). A task remembers the workflow it
-- belongs to (abort_workflow finds the tasks held by it); a workflow's record, each
-- group's barrier and its members' outcomes live in the tables below, changed in the
-- transaction of the settlement that changes them (queries.sql: join, fire_barrier).

ALTER TABLE {schema}.tasks ADD COLUMN workflow text;
CREATE INDEX tasks_workflow ON {schema}.tasks (workflow) WHERE workflow IS NOT NULL;

-- A record is kept ttl seconds after it started, then after it ended (expires_at); times
-- in Unix seconds (created_at from the producer's clock); info is the core's, opaque here.
CREATE TABLE {schema}.workflows (
    workflow_id text PRIMARY KEY,
    state       text NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'aborted')),
    created_at  double precision NOT NULL,
    finished_at double precision NOT NULL DEFAULT 0,
    ttl         double precision NOT NULL,
    info        bytea NOT NULL,
    failed_task text NOT NULL DEFAULT '',
    expires_at  timestamptz NOT NULL
);
CREATE INDEX workflows_created ON {schema}.workflows (created_at);
CREATE INDEX workflows_expiry ON {schema}.workflows (expires_at);

-- A group's barrier: how many members joined (failed ones too), its size (NULL until the
-- producer sealed it), whether its callback was published, and the callback itself. Kept
-- ttl seconds after its last change.
CREATE TABLE {schema}.barriers (
    barrier_id        text PRIMARY KEY,
    workflow          text NOT NULL,
    size              integer,
    joined            integer NOT NULL DEFAULT 0,
    failed            integer NOT NULL DEFAULT 0,
    first_failure     integer,
    fired             boolean NOT NULL DEFAULT false,
    partial           boolean NOT NULL DEFAULT false,
    ttl               double precision NOT NULL,
    expires_at        timestamptz NOT NULL,
    callback_id       text NOT NULL,
    callback_queue    text NOT NULL,
    callback_body     bytea NOT NULL,
    callback_priority integer NOT NULL DEFAULT 0,
    callback_key      text,
    callback_key_ttl  double precision NOT NULL DEFAULT 0
);
CREATE INDEX barriers_expiry ON {schema}.barriers (expires_at);

-- Each member's outcome (an encoded Result), by its index in its group.
CREATE TABLE {schema}.barrier_slots (
    barrier_id text NOT NULL,
    idx        integer NOT NULL,
    data       bytea NOT NULL,
    PRIMARY KEY (barrier_id, idx)
);
