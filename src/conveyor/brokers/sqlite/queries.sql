-- Every statement the SQLite broker runs, by name: `-- name --`, one description line, the
-- query. A state transition is one of these statements, or a few of them in one
-- BEGIN IMMEDIATE transaction (see broker.py). Fencing: a statement that settles or renews
-- a delivery matches only `state = 'leased' AND lease_token = :token`, so a zombie's late
-- call changes nothing. Literal states in WHERE clauses let SQLite use the partial indexes.

-- take_seq --
-- Reserve :n publish-order numbers; returns the last one reserved.
UPDATE counters SET value = value + :n WHERE name = 'seq' RETURNING value;

-- find_key --
-- The task an idempotency key stands for, while the key is live.
SELECT task_id FROM idempotency_keys
WHERE key = :key AND (expires_at IS NULL OR expires_at > :now);

-- publish --
-- Insert one message, ready or delayed; a task id that is already queued or running inserts nothing.
INSERT INTO tasks (task_id, queue, body, priority, seq, state, available_at, enqueued_at, key, key_ttl,
                   workflow)
VALUES (
    :task_id, :queue, :body, :priority, :seq,
    CASE WHEN :available_at > :now THEN 'delayed' ELSE 'ready' END,
    :available_at, :now, :key, :key_ttl, :workflow
)
ON CONFLICT (task_id) DO NOTHING;

-- hold_key --
-- Bind an idempotency key to a newly published task until that task finishes.
INSERT INTO idempotency_keys (key, task_id, expires_at) VALUES (:key, :task_id, NULL)
ON CONFLICT (key) DO UPDATE SET task_id = excluded.task_id, expires_at = NULL;

-- promote --
-- Make delayed messages whose time has come ready; returns their queues.
UPDATE tasks SET state = 'ready'
WHERE state = 'delayed' AND available_at <= :now
RETURNING queue;

-- fetch --
-- Claim up to :count ready messages of one queue (highest priority, then oldest), counting the attempt and fencing with the next lease token.
UPDATE tasks
SET state = 'leased',
    attempts = attempts + 1,
    lease_token = (SELECT value + 1 FROM counters WHERE name = 'lease_token'),
    lease_owner = :owner,
    lease_expires_at = :now + :lease
WHERE task_id IN (
    SELECT task_id FROM tasks
    WHERE queue = :queue AND state = 'ready'
    ORDER BY priority DESC, seq
    LIMIT :count
)
RETURNING task_id, queue, body, attempts, lease_token, enqueued_at, priority, seq, crashes,
          abort_requested;

-- spend_lease_token --
-- Consume the lease token the last fetch used, so every later claim is fenced by a larger one.
UPDATE counters SET value = value + 1 WHERE name = 'lease_token';

-- next_due --
-- When the earliest delayed message becomes ready (NULL when none is delayed).
SELECT min(available_at) FROM tasks WHERE state = 'delayed';

-- ack --
-- Finish a delivery we still own by deleting its message; returns its idempotency key.
DELETE FROM tasks
WHERE task_id = :task_id AND state = 'leased' AND lease_token = :token
RETURNING key, key_ttl;

-- finish_key --
-- Start a finished task's idempotency window: the key stays live for key_ttl more seconds.
UPDATE idempotency_keys SET expires_at = :now + :key_ttl
WHERE key = :key AND task_id = :task_id;

-- retry --
-- Requeue a delivery we still own at the back of its priority, visible from :available_at; the attempt stays counted (less :uncharge: 1 for a flow-control deferral).
UPDATE tasks
SET state = CASE WHEN :available_at > :now THEN 'delayed' ELSE 'ready' END,
    crashes = 0,
    attempts = max(attempts - :uncharge, 0),
    available_at = :available_at,
    seq = :seq,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE task_id = :task_id AND state = 'leased' AND lease_token = :token;

-- dead_letter --
-- Copy a delivery we still own to the dead-letter table with its raw bytes and :reason (ack's delete follows in the same transaction).
INSERT OR REPLACE INTO dead_letters (id, queue, body, reason, attempts, failed_at)
SELECT task_id, queue, body, :reason, attempts, :now FROM tasks
WHERE task_id = :task_id AND state = 'leased' AND lease_token = :token;

-- release --
-- Hand a delivery we still own back as ready at once, uncharging its attempt. It keeps its
-- publish order, so it runs next rather than behind the backlog.
UPDATE tasks
SET state = 'ready',
    attempts = max(attempts - 1, 0),
    available_at = 0,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE task_id = :task_id AND state = 'leased' AND lease_token = :token;

-- extend_lease --
-- Push the lease of a delivery we still own to :seconds from now.
UPDATE tasks SET lease_expires_at = :now + :seconds
WHERE task_id = :task_id AND state = 'leased' AND lease_token = :token;

-- reap --
-- Requeue messages whose lease expired at their old place (the front of their priority's queue,
-- so a dead worker's tasks restart within lease + reap interval even behind a backlog);
-- attempts stay counted and the old token is void.
UPDATE tasks
SET state = 'ready',
    crashes = crashes + 1,
    available_at = 0,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
WHERE state = 'leased' AND lease_expires_at <= :now
RETURNING queue;

-- spend_seq --
-- Consume the publish-order number the last reap used.
UPDATE counters SET value = value + 1 WHERE name = 'seq';

-- abort --
-- Remove a queued, delayed or retry-waiting message so it never runs; returns what its aborted result and idempotency key need.
DELETE FROM tasks
WHERE task_id = :task_id AND state IN ('ready', 'delayed')
RETURNING body, attempts, key, key_ttl;

-- mark_abort --
-- Set the abort mark of a leased message: its worker cancels it, and a later claim ends it unrun.
UPDATE tasks SET abort_requested = 1
WHERE task_id = :task_id AND state = 'leased';

-- abort_marks --
-- Which of the task ids (a JSON array) carry the abort mark.
SELECT task_id FROM tasks
WHERE abort_requested = 1 AND task_id IN (SELECT value FROM json_each(:task_ids));

-- locate --
-- The state and attempts of a message the broker holds.
SELECT state, attempts FROM tasks WHERE task_id = :task_id;

-- locate_dead --
-- The attempts of a dead-lettered message.
SELECT attempts FROM dead_letters WHERE id = :task_id;

-- queue_depths --
-- Ready, delayed and leased counts per queue (a delayed message that is due counts as ready).
SELECT queue,
       sum(state != 'leased' AND available_at <= :now),
       sum(state != 'leased' AND available_at > :now),
       sum(state = 'leased')
FROM tasks GROUP BY queue;

-- dead_depths --
-- Dead-letter counts per queue.
SELECT queue, count(*) FROM dead_letters GROUP BY queue;

-- list_dead_letters --
-- A page of the dead-letter queue (of :queue, or all when NULL), newest first.
SELECT id, queue, body, reason, attempts, failed_at FROM dead_letters
WHERE :queue IS NULL OR queue = :queue
ORDER BY rowid DESC
LIMIT :limit OFFSET :offset;

-- get_dead_letter --
-- One dead-letter entry by id.
SELECT id, queue, body, reason, attempts, failed_at FROM dead_letters WHERE id = :id;

-- requeue_dead --
-- Put a dead-lettered message back on its queue as new (attempts reset), at :priority (read from its body), unless its task id is live again; returns its queue.
INSERT INTO tasks (task_id, queue, body, priority, seq, state, available_at, enqueued_at)
SELECT id, queue, body, :priority, :seq, 'ready', 0, :now FROM dead_letters WHERE id = :id
ON CONFLICT (task_id) DO NOTHING
RETURNING queue;

-- delete_dead --
-- Delete one dead-letter entry.
DELETE FROM dead_letters WHERE id = :id;

-- delete_all_dead --
-- Delete every dead-letter entry (of :queue, or all when NULL).
DELETE FROM dead_letters WHERE :queue IS NULL OR queue = :queue;

-- heartbeat --
-- Record a worker as alive until :expires_at.
INSERT INTO workers (worker_id, info, expires_at) VALUES (:worker_id, :info, :expires_at)
ON CONFLICT (worker_id) DO UPDATE SET info = excluded.info, expires_at = excluded.expires_at;

-- workers --
-- The workers whose heartbeat has not expired, in the order they first reported.
SELECT info FROM workers WHERE expires_at > :now ORDER BY rowid;

-- put_result --
-- Store or replace a task's result until :expires_at (NULL: forever).
INSERT INTO results (task_id, data, expires_at) VALUES (:task_id, :data, :expires_at)
ON CONFLICT (task_id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at;

-- get_result --
-- A task's result unless it expired.
SELECT data FROM results
WHERE task_id = :task_id AND (expires_at IS NULL OR expires_at > :now);

-- delete_result --
-- Forget a task's result.
DELETE FROM results WHERE task_id = :task_id;

-- set_progress --
-- Store a task's progress snapshot until :expires_at.
INSERT INTO progress (task_id, data, expires_at) VALUES (:task_id, :data, :expires_at)
ON CONFLICT (task_id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at;

-- get_progress --
-- A task's progress snapshot unless it expired.
SELECT data FROM progress WHERE task_id = :task_id AND expires_at > :now;

-- delete_progress --
-- Forget a task's progress (its result supersedes it).
DELETE FROM progress WHERE task_id = :task_id;

-- purge_results --
-- Delete expired results.
DELETE FROM results WHERE expires_at <= :now;

-- purge_progress --
-- Delete expired progress snapshots.
DELETE FROM progress WHERE expires_at <= :now;

-- purge_keys --
-- Delete idempotency keys whose window has closed.
DELETE FROM idempotency_keys WHERE expires_at <= :now;

-- purge_workers --
-- Delete expired worker heartbeats.
DELETE FROM workers WHERE expires_at <= :now;

-- save_schedule --
-- Insert or replace a schedule definition.
INSERT INTO schedules (schedule_id, spec) VALUES (:schedule_id, :spec)
ON CONFLICT (schedule_id) DO UPDATE SET spec = excluded.spec;

-- delete_schedule --
-- Remove a schedule definition.
DELETE FROM schedules WHERE schedule_id = :schedule_id;

-- load_schedules --
-- Every schedule definition.
SELECT schedule_id, spec FROM schedules ORDER BY schedule_id;

-- count_total --
-- Add :n to the total of (:task, :queue, :status).
INSERT INTO task_counts (task, queue, status, count) VALUES (:task, :queue, :status, :n)
ON CONFLICT (task, queue, status) DO UPDATE SET count = count + excluded.count;

-- count_minute --
-- Add :n to the count of (:task, :queue, :status) in the minute that starts at :minute.
INSERT INTO task_count_minutes (minute, task, queue, status, count)
VALUES (:minute, :task, :queue, :status, :n)
ON CONFLICT (minute, task, queue, status) DO UPDATE SET count = count + excluded.count;

-- forget_count_minutes --
-- Delete the minutes that start before :oldest (older than counts_kept).
DELETE FROM task_count_minutes WHERE minute < :oldest;

-- count_totals --
-- Every total.
SELECT task, queue, status, count FROM task_counts;

-- count_minutes --
-- The counts of the minutes that start at or after :since, oldest first.
SELECT minute, task, queue, status, count FROM task_count_minutes
WHERE minute >= :since ORDER BY minute;

-- save_workflow --
-- Save a workflow's record; over an existing one, only its info and ttl (its state stays).
INSERT INTO workflows (workflow_id, state, created_at, finished_at, ttl, info, failed_task, expires_at)
VALUES (:workflow_id, :state, :created_at, :finished_at, :ttl, :info, :failed_task, :expires_at)
ON CONFLICT (workflow_id) DO UPDATE SET
    info = excluded.info,
    ttl = excluded.ttl,
    expires_at = (CASE WHEN state = 'running' THEN created_at ELSE finished_at END) + excluded.ttl;

-- open_barrier --
-- Open a group's barrier, unless it was opened before (a continuation started twice keeps it).
INSERT INTO barriers (barrier_id, workflow, size, partial, ttl, expires_at, callback_id,
                      callback_queue, callback_body, callback_priority, callback_key,
                      callback_key_ttl)
VALUES (:barrier_id, :workflow, :size, :partial, :ttl, :now + :ttl, :callback_id,
        :callback_queue, :callback_body, :callback_priority, :callback_key, :callback_key_ttl)
ON CONFLICT (barrier_id) DO NOTHING;

-- join_slot --
-- Keep a member's outcome in its slot of a live barrier; nothing when the slot is taken.
INSERT INTO barrier_slots (barrier_id, idx, data)
SELECT :barrier_id, :idx, :data
WHERE EXISTS (SELECT 1 FROM barriers WHERE barrier_id = :barrier_id AND expires_at > :now)
ON CONFLICT (barrier_id, idx) DO NOTHING;

-- count_join --
-- Count a member that joined its barrier (and a failure, the first one's index), and keep the barrier ttl more seconds.
UPDATE barriers
SET joined = joined + 1,
    failed = failed + :failed,
    first_failure = CASE WHEN :failed AND first_failure IS NULL THEN :idx ELSE first_failure END,
    expires_at = :now + ttl
WHERE barrier_id = :barrier_id;

-- fire_barrier --
-- Mark a barrier fired when every member joined, or (not partial) one failed; returns its callback, once.
UPDATE barriers SET fired = 1
WHERE barrier_id = :barrier_id AND fired = 0 AND expires_at > :now
  AND ((size IS NOT NULL AND joined >= size) OR (failed > 0 AND partial = 0))
RETURNING workflow, callback_id, callback_queue, callback_body, callback_priority, callback_key,
          callback_key_ttl;

-- seal_barrier --
-- Give a barrier its size, once the producer published every member.
UPDATE barriers SET size = :size, expires_at = :now + ttl
WHERE barrier_id = :barrier_id AND expires_at > :now;

-- get_barrier --
-- Where a live barrier stands.
SELECT workflow, size, joined, failed, first_failure, fired, partial FROM barriers
WHERE barrier_id = :barrier_id AND expires_at > :now;

-- barrier_results --
-- The outcomes in slots :start to :stop - 1 of a live barrier.
SELECT idx, data FROM barrier_slots
WHERE barrier_id = :barrier_id AND idx >= :start AND idx < :stop
  AND EXISTS (SELECT 1 FROM barriers WHERE barrier_id = :barrier_id AND expires_at > :now);

-- workflow_state --
-- The state of a live workflow (an aborted one publishes nothing more).
SELECT state FROM workflows WHERE workflow_id = :workflow_id AND expires_at > :now;

-- finish_workflow --
-- End a running workflow, with the task whose failure ended it; kept ttl more seconds.
UPDATE workflows
SET state = :state, finished_at = :now, failed_task = :failed_task, expires_at = :now + ttl
WHERE workflow_id = :workflow_id AND state = 'running' AND expires_at > :now;

-- abort_workflow --
-- Set a running workflow aborted; kept ttl more seconds.
UPDATE workflows SET state = 'aborted', finished_at = :now, expires_at = :now + ttl
WHERE workflow_id = :workflow_id AND state = 'running' AND expires_at > :now;

-- workflow_tasks --
-- The tasks of a workflow the broker holds (waiting or leased).
SELECT task_id FROM tasks WHERE workflow = :workflow_id ORDER BY task_id;

-- get_workflow --
-- A live workflow's record.
SELECT workflow_id, state, created_at, finished_at, ttl, info, failed_task FROM workflows
WHERE workflow_id = :workflow_id AND expires_at > :now;

-- list_workflows --
-- A page of live workflow records (in :state, or all when NULL), newest first.
SELECT workflow_id, state, created_at, finished_at, ttl, info, failed_task FROM workflows
WHERE expires_at > :now AND (:state IS NULL OR state = :state)
ORDER BY created_at DESC, workflow_id
LIMIT :limit OFFSET :offset;

-- count_workflows --
-- How many live workflows are in each state.
SELECT state, count(*) FROM workflows WHERE expires_at > :now GROUP BY state;

-- purge_workflows --
-- Delete workflow records past their ttl.
DELETE FROM workflows WHERE expires_at <= :now;

-- purge_barrier_slots --
-- Delete the outcomes kept by barriers past their ttl.
DELETE FROM barrier_slots
WHERE barrier_id IN (SELECT barrier_id FROM barriers WHERE expires_at <= :now);

-- purge_barriers --
-- Delete barriers past their ttl.
DELETE FROM barriers WHERE expires_at <= :now;

-- get_bucket --
-- A token bucket's tokens and when they were counted (no row: a full bucket).
SELECT tokens, updated_at FROM flow_buckets WHERE key = :key;

-- put_bucket --
-- Save a token bucket after a take (or a refused one: its refill is counted).
INSERT INTO flow_buckets (key, tokens, updated_at) VALUES (:key, :tokens, :now)
ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, updated_at = excluded.updated_at;

-- drop_expired_permits --
-- Drop a semaphore's permits whose lease ended (their holders died or stalled).
DELETE FROM flow_permits WHERE key = :key AND expires_at <= :now;

-- count_permits --
-- How many permits of a semaphore are held, and whether :holder holds one.
SELECT count(*), coalesce(sum(holder = :holder), 0) FROM flow_permits WHERE key = :key;

-- hold_permit --
-- Take (or renew) :holder's permit of a semaphore until :expires_at.
INSERT INTO flow_permits (key, holder, expires_at) VALUES (:key, :holder, :expires_at)
ON CONFLICT (key, holder) DO UPDATE SET expires_at = excluded.expires_at;

-- renew_permit --
-- Push a permit's lease, if it is still held.
UPDATE flow_permits SET expires_at = :expires_at WHERE key = :key AND holder = :holder;

-- release_permit --
-- Give a permit back.
DELETE FROM flow_permits WHERE key = :key AND holder = :holder;

-- put_mark --
-- Set a mark until :expires_at (the newest write wins).
INSERT INTO flow_marks (name, value, expires_at) VALUES (:name, :value, :expires_at)
ON CONFLICT (name) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at;

-- get_mark --
-- A mark's value, unless it expired.
SELECT value FROM flow_marks WHERE name = :name AND expires_at > :now;

-- purge_marks --
-- Delete expired marks.
DELETE FROM flow_marks WHERE expires_at <= :now;
