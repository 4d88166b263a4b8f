-- Every statement the PostgreSQL broker runs, by name: `-- name --`, one description line,
-- the query. Each state transition is ONE statement (data-modifying CTEs), so it is atomic
-- without BEGIN/COMMIT round trips. Fencing: a statement that settles or renews a delivery
-- matches only `state = 'leased' AND lease_token = <token>`, so a zombie's late call changes
-- nothing. {schema} is the quoted schema, {channel} the prefix of the NOTIFY channels;
-- pg_notify inside a statement is delivered at COMMIT, so a listener never sees a
-- notification for a row it cannot read yet.

-- publish --
-- Insert messages ($1 ids, $2 queues, $3 bodies, $4 priorities, $5 delays in seconds, $6 reused ids, $7 idempotency keys already held for them, $8 key ttls, $9 workflows); a task id already waiting or leased inserts nothing; a reused id forgets its result; wakes the queues' fetchers.
WITH items AS (
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::bytea[], $4::int[], $5::float8[], $6::bool[], $7::text[],
        $8::float8[], $9::text[]
    ) WITH ORDINALITY AS i(task_id, queue, body, priority, delay, reused, key, key_ttl, workflow,
                           ord)
), inserted AS (
    INSERT INTO {schema}.tasks (task_id, queue, body, priority, state, available_at, key, key_ttl,
                                workflow)
    SELECT task_id, queue, body, priority, 'waiting', now() + make_interval(secs => delay),
           key, key_ttl, workflow
    FROM items ORDER BY ord
    ON CONFLICT (task_id) DO NOTHING
    RETURNING task_id, queue
), forget_results AS (
    DELETE FROM {schema}.results r USING inserted i, items
    WHERE r.task_id = i.task_id AND items.task_id = i.task_id AND items.reused
), forget_progress AS (
    DELETE FROM {schema}.progress p USING inserted i, items
    WHERE p.task_id = i.task_id AND items.task_id = i.task_id AND items.reused
)
SELECT task_id, pg_notify('{channel}:queue', queue)::text FROM inserted;

-- hold_key --
-- Bind idempotency key $1 to task $2 unless it is live (held by a waiting or leased task, or ended less than key_ttl ago); returns a row only when the key is now ours.
INSERT INTO {schema}.idempotency_keys (key, task_id, expires_at) VALUES ($1, $2, NULL)
ON CONFLICT (key) DO UPDATE SET task_id = excluded.task_id, expires_at = NULL
    WHERE {schema}.idempotency_keys.expires_at <= now()
RETURNING task_id;

-- find_key --
-- The task a live idempotency key stands for.
SELECT task_id FROM {schema}.idempotency_keys WHERE key = $1;

-- fetch --
-- Claim up to $2 ready messages of queue $1 (highest priority, then oldest) for owner $3, skipping rows other claims hold, counting the attempt and fencing each with a new lease token; the lease ($4 seconds) runs on the server's clock.
WITH picked AS (
    SELECT task_id FROM {schema}.tasks
    WHERE queue = $1 AND state = 'waiting' AND available_at <= now()
    ORDER BY priority DESC, seq
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE {schema}.tasks t
SET state = 'leased',
    attempts = t.attempts + 1,
    lease_token = nextval('{schema}.lease_tokens'),
    lease_owner = $3,
    lease_expires_at = now() + make_interval(secs => $4)
FROM picked WHERE t.task_id = picked.task_id
RETURNING t.task_id, t.queue, t.body, t.attempts, t.lease_token,
          extract(epoch FROM t.enqueued_at)::float8, t.crashes, t.abort_requested,
          t.priority, t.seq;

-- next_due --
-- Seconds until the earliest waiting message of the queues ($1) becomes ready (NULL: none waits).
SELECT extract(epoch FROM min(available_at) - now())::float8 FROM {schema}.tasks
WHERE state = 'waiting' AND queue = ANY($1::text[]);

-- finish --
-- Ack or dead-letter deliveries we still own ($1 ids, $2 tokens, $3 reasons: NULL acks); a dead one keeps its raw bytes, attempts and reason; idempotency keys live key_ttl more seconds; results ($4 ids, $5 data, $6 ttls, NULL forever) of the owned ones are stored, replacing progress, and their waiters woken; returns the owned ids.
WITH s AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[]) AS s(task_id, token, reason)
), gone AS (
    DELETE FROM {schema}.tasks t USING s
    WHERE t.task_id = s.task_id AND t.state = 'leased' AND t.lease_token = s.token
    RETURNING t.task_id, t.queue, t.body, t.attempts, t.key, t.key_ttl, s.reason
), dead AS (
    INSERT INTO {schema}.dead_letters (id, queue, body, reason, attempts)
    SELECT task_id, queue, body, reason, attempts FROM gone WHERE reason IS NOT NULL
    ON CONFLICT (id) DO UPDATE SET queue = excluded.queue, body = excluded.body,
        reason = excluded.reason, attempts = excluded.attempts, failed_at = now(),
        seq = nextval('{schema}.dead_letter_seq')
), keys AS (
    UPDATE {schema}.idempotency_keys k SET expires_at = now() + make_interval(secs => g.key_ttl)
    FROM gone g WHERE k.key = g.key AND k.task_id = g.task_id
), stored AS (
    INSERT INTO {schema}.results (task_id, data, expires_at)
    SELECT r.task_id, r.data,
           CASE WHEN r.ttl IS NULL THEN NULL ELSE now() + make_interval(secs => r.ttl) END
    FROM unnest($4::text[], $5::bytea[], $6::float8[]) AS r(task_id, data, ttl)
    JOIN gone USING (task_id)
    ON CONFLICT (task_id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at
    RETURNING task_id, pg_notify('{channel}:result', task_id)::text
), progress AS (
    DELETE FROM {schema}.progress p USING stored WHERE p.task_id = stored.task_id
)
SELECT task_id FROM gone;

-- retry --
-- Requeue deliveries we still own ($1 ids, $2 tokens) at the back of their priority, ready after $3 seconds each; the attempt stays counted (less $4: 1 for a flow-control deferral), the row of crashes ends; wakes the queues' fetchers (a waiting fetch re-aims its timer).
WITH s AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::int[])
        AS s(task_id, token, delay, uncharge)
), moved AS (
    UPDATE {schema}.tasks t
    SET state = 'waiting', crashes = 0, attempts = greatest(t.attempts - s.uncharge, 0),
        available_at = now() + make_interval(secs => s.delay),
        seq = nextval('{schema}.task_seq'),
        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
    FROM s WHERE t.task_id = s.task_id AND t.state = 'leased' AND t.lease_token = s.token
    RETURNING t.task_id, t.queue
)
SELECT task_id, pg_notify('{channel}:queue', queue)::text FROM moved;

-- release --
-- Hand deliveries we still own ($1 ids, $2 tokens) back as ready at once, in their old place, uncharging the attempt; wakes the queues' fetchers.
WITH moved AS (
    UPDATE {schema}.tasks t
    SET state = 'waiting', attempts = greatest(t.attempts - 1, 0), available_at = now(),
        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
    FROM unnest($1::text[], $2::bigint[]) AS s(task_id, token)
    WHERE t.task_id = s.task_id AND t.state = 'leased' AND t.lease_token = s.token
    RETURNING t.task_id, t.queue
)
SELECT task_id, pg_notify('{channel}:queue', queue)::text FROM moved;

-- extend_lease --
-- Push the leases of deliveries we still own ($1 ids, $2 tokens) to $3 seconds from now; returns the owned ids.
UPDATE {schema}.tasks t SET lease_expires_at = now() + make_interval(secs => $3)
FROM unnest($1::text[], $2::bigint[]) AS s(task_id, token)
WHERE t.task_id = s.task_id AND t.state = 'leased' AND t.lease_token = s.token
RETURNING t.task_id;

-- reap --
-- Requeue messages whose lease expired, in their old place (before the backlog of their priority); the attempt stays counted, a crash is counted, the old token is void; wakes the queues' fetchers.
WITH moved AS (
    UPDATE {schema}.tasks
    SET state = 'waiting', crashes = crashes + 1, available_at = now(),
        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
    WHERE state = 'leased' AND lease_expires_at <= now()
    RETURNING queue
)
SELECT queue, count(*), pg_notify('{channel}:queue', queue)::text FROM moved GROUP BY queue;

-- lock_task --
-- Lock one message and say where it is, for abort's decision inside its transaction.
SELECT state FROM {schema}.tasks WHERE task_id = $1 FOR UPDATE;

-- abort --
-- Remove a waiting message so it never runs; returns what its aborted result and idempotency key need.
DELETE FROM {schema}.tasks WHERE task_id = $1 AND state = 'waiting'
RETURNING body, attempts, key, key_ttl;

-- finish_key --
-- Start an ended task's idempotency window: key $1 of task $2 lives $3 more seconds.
UPDATE {schema}.idempotency_keys SET expires_at = now() + make_interval(secs => $3)
WHERE key = $1 AND task_id = $2;

-- mark_abort --
-- Set the abort mark of a leased message and signal its workers.
WITH marked AS (
    UPDATE {schema}.tasks SET abort_requested = true
    WHERE task_id = $1 AND state = 'leased'
    RETURNING task_id
)
SELECT task_id, pg_notify('{channel}:abort', task_id)::text FROM marked;

-- abort_marks --
-- Which of the task ids ($1) carry the abort mark.
SELECT task_id FROM {schema}.tasks WHERE abort_requested AND task_id = ANY($1::text[]);

-- locate --
-- The state and attempts of a message the broker holds, or of its dead letter.
SELECT state, attempts FROM {schema}.tasks WHERE task_id = $1
UNION ALL
SELECT 'dead', attempts FROM {schema}.dead_letters WHERE id = $1;

-- queue_depths --
-- Ready, delayed, leased and dead counts per queue.
SELECT queue, sum(ready)::bigint, sum(delayed)::bigint, sum(running)::bigint, sum(dead)::bigint
FROM (
    SELECT queue,
           count(*) FILTER (WHERE state = 'waiting' AND available_at <= now()) AS ready,
           count(*) FILTER (WHERE state = 'waiting' AND available_at > now()) AS delayed,
           count(*) FILTER (WHERE state = 'leased') AS running,
           0 AS dead
    FROM {schema}.tasks GROUP BY queue
    UNION ALL
    SELECT queue, 0, 0, 0, count(*) FROM {schema}.dead_letters GROUP BY queue
) c
GROUP BY queue ORDER BY queue;

-- list_dead_letters --
-- A page of the dead-letter queue (of queue $1, or all when NULL), newest first.
SELECT id, queue, body, reason, attempts, extract(epoch FROM failed_at)::float8
FROM {schema}.dead_letters
WHERE $1::text IS NULL OR queue = $1
ORDER BY seq DESC LIMIT $2 OFFSET $3;

-- get_dead_letter --
-- One dead-letter entry by id.
SELECT id, queue, body, reason, attempts, extract(epoch FROM failed_at)::float8
FROM {schema}.dead_letters WHERE id = $1;

-- requeue_dead --
-- Put dead letter $1 back on its queue as new (attempts reset) at priority $2, unless its task id is live again; forgets the entry and its result; wakes the queue's fetchers.
WITH moved AS (
    INSERT INTO {schema}.tasks (task_id, queue, body, priority, state)
    SELECT id, queue, body, $2, 'waiting' FROM {schema}.dead_letters WHERE id = $1
    ON CONFLICT (task_id) DO NOTHING
    RETURNING task_id, queue
), gone AS (
    DELETE FROM {schema}.dead_letters d USING moved WHERE d.id = moved.task_id
), forgotten AS (
    DELETE FROM {schema}.results r USING moved WHERE r.task_id = moved.task_id
)
SELECT task_id, pg_notify('{channel}:queue', queue)::text FROM moved;

-- delete_dead --
-- Delete the dead-letter entries $1.
DELETE FROM {schema}.dead_letters WHERE id = ANY($1::text[]);

-- delete_all_dead --
-- Delete every dead-letter entry (of queue $1, or all when NULL).
DELETE FROM {schema}.dead_letters WHERE $1::text IS NULL OR queue = $1;

-- heartbeat --
-- Record worker $1 (info $2) as alive for $3 seconds.
INSERT INTO {schema}.workers (worker_id, info, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (worker_id) DO UPDATE SET info = excluded.info, expires_at = excluded.expires_at;

-- workers --
-- The workers whose heartbeat has not expired, in the order they first reported.
SELECT info FROM {schema}.workers WHERE expires_at > now() ORDER BY seq;

-- put_results --
-- Store or replace results ($1 ids, $2 data, $3 ttls, NULL forever), replacing their progress, and wake their waiters.
WITH stored AS (
    INSERT INTO {schema}.results (task_id, data, expires_at)
    SELECT r.task_id, r.data,
           CASE WHEN r.ttl IS NULL THEN NULL ELSE now() + make_interval(secs => r.ttl) END
    FROM unnest($1::text[], $2::bytea[], $3::float8[]) AS r(task_id, data, ttl)
    ON CONFLICT (task_id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at
    RETURNING task_id, pg_notify('{channel}:result', task_id)::text
), progress AS (
    DELETE FROM {schema}.progress p USING stored WHERE p.task_id = stored.task_id
)
SELECT count(*) FROM stored;

-- get_result --
-- A task's result unless it expired.
SELECT data FROM {schema}.results
WHERE task_id = $1 AND (expires_at IS NULL OR expires_at > now());

-- delete_result --
-- Forget a task's result and progress.
WITH progress AS (DELETE FROM {schema}.progress WHERE task_id = $1)
DELETE FROM {schema}.results WHERE task_id = $1;

-- set_progress --
-- Store task $1's progress snapshot $2 for $3 seconds.
INSERT INTO {schema}.progress (task_id, data, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (task_id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at;

-- get_progress --
-- A task's progress snapshot unless it expired.
SELECT data FROM {schema}.progress WHERE task_id = $1 AND expires_at > now();

-- purge --
-- Delete expired results, progress, idempotency keys, heartbeats, workflow records, barriers with their outcomes and flow marks (at most $1 rows of each, so one run stays short under a backlog).
WITH r AS (
    DELETE FROM {schema}.results WHERE task_id IN (
        SELECT task_id FROM {schema}.results WHERE expires_at <= now() LIMIT $1)
    RETURNING 1
), p AS (
    DELETE FROM {schema}.progress WHERE task_id IN (
        SELECT task_id FROM {schema}.progress WHERE expires_at <= now() LIMIT $1)
    RETURNING 1
), k AS (
    DELETE FROM {schema}.idempotency_keys WHERE key IN (
        SELECT key FROM {schema}.idempotency_keys WHERE expires_at <= now() LIMIT $1)
    RETURNING 1
), w AS (
    DELETE FROM {schema}.workers WHERE expires_at <= now() - interval '1 minute'
    RETURNING 1
), f AS (
    DELETE FROM {schema}.workflows WHERE workflow_id IN (
        SELECT workflow_id FROM {schema}.workflows WHERE expires_at <= now() LIMIT $1)
    RETURNING 1
), b AS (
    DELETE FROM {schema}.barriers WHERE barrier_id IN (
        SELECT barrier_id FROM {schema}.barriers WHERE expires_at <= now() LIMIT $1)
    RETURNING barrier_id
), s AS (
    DELETE FROM {schema}.barrier_slots USING b WHERE barrier_slots.barrier_id = b.barrier_id
    RETURNING 1
), m AS (
    DELETE FROM {schema}.flow_marks WHERE name IN (
        SELECT name FROM {schema}.flow_marks WHERE expires_at <= now() LIMIT $1)
    RETURNING 1
)
SELECT (SELECT count(*) FROM r) + (SELECT count(*) FROM p) + (SELECT count(*) FROM k)
       + (SELECT count(*) FROM w) + (SELECT count(*) FROM f) + (SELECT count(*) FROM b)
       + (SELECT count(*) FROM m);

-- save_schedule --
-- Insert or replace a schedule definition.
INSERT INTO {schema}.schedules (schedule_id, spec) VALUES ($1, $2)
ON CONFLICT (schedule_id) DO UPDATE SET spec = excluded.spec;

-- delete_schedule --
-- Remove a schedule definition; returns it when it existed.
DELETE FROM {schema}.schedules WHERE schedule_id = $1 RETURNING schedule_id;

-- load_schedules --
-- Every schedule definition.
SELECT schedule_id, spec FROM {schema}.schedules ORDER BY schedule_id;

-- append_events --
-- Append encoded events ($1) in order.
INSERT INTO {schema}.events (record)
SELECT record FROM unnest($1::bytea[]) WITH ORDINALITY AS e(record, ord) ORDER BY ord;

-- trim_events --
-- Keep about the last $1 events.
DELETE FROM {schema}.events WHERE id <= (SELECT max(id) FROM {schema}.events) - $1;

-- read_events --
-- Up to $2 events after id $1, oldest first.
SELECT id, record FROM {schema}.events WHERE id > $1 ORDER BY id LIMIT $2;

-- recent_events --
-- The last $1 events, oldest first.
SELECT id, record FROM (
    SELECT id, record FROM {schema}.events ORDER BY id DESC LIMIT $1
) e ORDER BY id;

-- record_counts --
-- Add counts ($1 minute starts, $2 tasks, $3 queues, $4 statuses, $5 counts; one row per minute and counter) to the totals, and to their minutes unless they start before $6; delete the minutes that start before $6. Rows are written in key order, so concurrent flushes of several workers wait for each other instead of deadlocking.
WITH counted AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[])
        AS r(minute, task, queue, status, n)
), totals AS (
    INSERT INTO {schema}.task_counts AS c (task, queue, status, count)
    SELECT task, queue, status, sum(n) FROM counted
    GROUP BY task, queue, status ORDER BY task, queue, status
    ON CONFLICT (task, queue, status) DO UPDATE SET count = c.count + excluded.count
    RETURNING 1
), minutes AS (
    INSERT INTO {schema}.task_count_minutes AS c (minute, task, queue, status, count)
    SELECT minute, task, queue, status, n FROM counted WHERE minute >= $6
    ORDER BY minute, task, queue, status
    ON CONFLICT (minute, task, queue, status) DO UPDATE SET count = c.count + excluded.count
    RETURNING 1
), forgotten AS (
    DELETE FROM {schema}.task_count_minutes WHERE minute < $6
    RETURNING 1
)
SELECT (SELECT count(*) FROM totals), (SELECT count(*) FROM minutes),
       (SELECT count(*) FROM forgotten);

-- count_totals --
-- Every task count total.
SELECT task, queue, status, count FROM {schema}.task_counts;

-- count_minutes --
-- The task counts of the minutes that start at or after $1, oldest first.
SELECT minute, task, queue, status, count FROM {schema}.task_count_minutes
WHERE minute >= $1 ORDER BY minute;

-- save_workflow --
-- Save a workflow's record ($1 id, $2 state, $3 created at, $4 finished at, $5 ttl, $6 info, $7 failed task); over an existing one, only its info and ttl (its state stays).
INSERT INTO {schema}.workflows AS w
    (workflow_id, state, created_at, finished_at, ttl, info, failed_task, expires_at)
VALUES ($1::text, $2::text, $3::float8, $4::float8, $5::float8, $6::bytea, $7::text,
        to_timestamp(CASE WHEN $2::text = 'running' THEN $3::float8 ELSE $4::float8 END
                     + $5::float8))
ON CONFLICT (workflow_id) DO UPDATE SET
    info = excluded.info,
    ttl = excluded.ttl,
    expires_at = to_timestamp(CASE WHEN w.state = 'running' THEN w.created_at
                              ELSE w.finished_at END + excluded.ttl);

-- open_barrier --
-- Open barrier $1 of workflow $2 (size $3, NULL until sealed; partial $4; ttl $5 seconds; callback $6 id, $7 queue, $8 body, $9 priority, $10 key, $11 key ttl), unless it was opened before (a continuation started twice keeps it); returns it when opened.
INSERT INTO {schema}.barriers (barrier_id, workflow, size, partial, ttl, expires_at, callback_id,
                               callback_queue, callback_body, callback_priority, callback_key,
                               callback_key_ttl)
VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $5), $6, $7, $8, $9, $10, $11)
ON CONFLICT (barrier_id) DO NOTHING
RETURNING barrier_id;

-- join --
-- Keep member $2's outcome $3 in its slot of live barrier $1 unless the slot is taken, and count it (and a failure, $4, the first one's index) in the barrier, kept ttl more seconds; returns the barrier when counted.
WITH slot AS (
    INSERT INTO {schema}.barrier_slots (barrier_id, idx, data)
    SELECT $1, $2, $3
    WHERE EXISTS (SELECT 1 FROM {schema}.barriers WHERE barrier_id = $1 AND expires_at > now())
    ON CONFLICT (barrier_id, idx) DO NOTHING
    RETURNING barrier_id
)
UPDATE {schema}.barriers b
SET joined = b.joined + 1,
    failed = b.failed + CASE WHEN $4::bool THEN 1 ELSE 0 END,
    first_failure = CASE WHEN $4::bool AND b.first_failure IS NULL THEN $2
                    ELSE b.first_failure END,
    expires_at = now() + make_interval(secs => b.ttl)
FROM slot WHERE b.barrier_id = slot.barrier_id
RETURNING b.barrier_id;

-- fire_barrier --
-- Mark live barrier $1 fired when every member joined, or (not partial) one failed; returns its callback, once (the row lock serialises two members that finish together).
UPDATE {schema}.barriers SET fired = true
WHERE barrier_id = $1 AND NOT fired AND expires_at > now()
  AND ((size IS NOT NULL AND joined >= size) OR (failed > 0 AND NOT partial))
RETURNING workflow, callback_id, callback_queue, callback_body, callback_priority,
          callback_key, callback_key_ttl;

-- seal_barrier --
-- Give live barrier $1 its size $2, once the producer published every member; returns it.
UPDATE {schema}.barriers SET size = $2, expires_at = now() + make_interval(secs => ttl)
WHERE barrier_id = $1 AND expires_at > now()
RETURNING barrier_id;

-- get_barrier --
-- Where live barrier $1 stands.
SELECT workflow, size, joined, failed, first_failure, fired, partial FROM {schema}.barriers
WHERE barrier_id = $1 AND expires_at > now();

-- barrier_results --
-- The outcomes in slots $2 to $3 - 1 of live barrier $1.
SELECT idx, data FROM {schema}.barrier_slots
WHERE barrier_id = $1 AND idx >= $2 AND idx < $3
  AND EXISTS (SELECT 1 FROM {schema}.barriers WHERE barrier_id = $1 AND expires_at > now());

-- workflow_state --
-- The state of live workflow $1, share-locked until the transaction ends: an abort waits for what this transaction publishes, or this one sees the abort and publishes nothing.
SELECT state FROM {schema}.workflows WHERE workflow_id = $1 AND expires_at > now() FOR SHARE;

-- finish_workflow --
-- End running workflow $1 in state $2, with the task $3 whose failure ended it; kept ttl more seconds.
UPDATE {schema}.workflows
SET state = $2, finished_at = extract(epoch FROM now()), failed_task = $3,
    expires_at = now() + make_interval(secs => ttl)
WHERE workflow_id = $1 AND state = 'running' AND expires_at > now();

-- lock_workflow --
-- Live workflow $1's record, locked for abort's decision inside its transaction.
SELECT workflow_id, state, created_at, finished_at, ttl, info, failed_task
FROM {schema}.workflows WHERE workflow_id = $1 AND expires_at > now() FOR UPDATE;

-- abort_workflow --
-- Set workflow $1 aborted (abort holds its row lock, and checked it runs); kept ttl more seconds.
UPDATE {schema}.workflows
SET state = 'aborted', finished_at = extract(epoch FROM now()),
    expires_at = now() + make_interval(secs => ttl)
WHERE workflow_id = $1;

-- workflow_tasks --
-- The tasks of workflow $1 the broker holds (waiting or leased).
SELECT task_id FROM {schema}.tasks WHERE workflow = $1 ORDER BY task_id;

-- get_workflow --
-- Live workflow $1's record.
SELECT workflow_id, state, created_at, finished_at, ttl, info, failed_task
FROM {schema}.workflows WHERE workflow_id = $1 AND expires_at > now();

-- list_workflows --
-- A page of live workflow records (in state $1, or all when NULL), newest first.
SELECT workflow_id, state, created_at, finished_at, ttl, info, failed_task
FROM {schema}.workflows
WHERE expires_at > now() AND ($1::text IS NULL OR state = $1)
ORDER BY created_at DESC, workflow_id
LIMIT $2 OFFSET $3;

-- count_workflows --
-- How many live workflows are in each state.
SELECT state, count(*) FROM {schema}.workflows WHERE expires_at > now() GROUP BY state;

-- fill_bucket --
-- Create token bucket $1 full ($2 tokens) unless it exists, so that take_token finds a row to lock.
INSERT INTO {schema}.flow_buckets (key, tokens, updated_at) VALUES ($1, $2, now())
ON CONFLICT (key) DO NOTHING;

-- take_token --
-- Take a token from bucket $1 (refilled at $2 a second up to $3), on the server's clock: returns 0 when taken, else the seconds until the next token (conveyor.flow.take_bucket is the same arithmetic).
WITH old AS (
    SELECT tokens, updated_at FROM {schema}.flow_buckets WHERE key = $1 FOR UPDATE
), filled AS (
    -- now() is the transaction's start: one that waited for the row lock may be older
    -- than the bucket's time, which never goes back (no refill counted twice)
    SELECT least($3::float8,
                 tokens + greatest(extract(epoch FROM now() - updated_at)::float8, 0) * $2) AS t,
           greatest(now(), updated_at) AS at
    FROM old
), saved AS (
    UPDATE {schema}.flow_buckets SET
        tokens = (SELECT CASE WHEN t >= 1 THEN t - 1 ELSE t END FROM filled),
        updated_at = (SELECT at FROM filled)
    WHERE key = $1
)
SELECT CASE WHEN t >= 1 THEN 0 ELSE (1 - t) / $2 END FROM filled;

-- lock_permits --
-- Serialise the takers of semaphore $1 (its schema-qualified name) until the transaction ends.
SELECT pg_advisory_xact_lock(hashtextextended($1, 0));

-- drop_permits --
-- Drop the permits of semaphore $1 whose lease ended (their holders died or stalled).
DELETE FROM {schema}.flow_permits WHERE key = $1 AND expires_at <= now();

-- acquire_permit --
-- Take a permit of semaphore $1 for holder $3 for $4 seconds if it holds one or fewer than $2 are held; returns whether it was taken.
WITH live AS (
    SELECT count(*) AS n, coalesce(bool_or(holder = $3), false) AS mine
    FROM {schema}.flow_permits WHERE key = $1
), taken AS (
    INSERT INTO {schema}.flow_permits (key, holder, expires_at)
    SELECT $1, $3, now() + make_interval(secs => $4) FROM live WHERE mine OR n < $2
    ON CONFLICT (key, holder) DO UPDATE SET expires_at = excluded.expires_at
    RETURNING 1
)
SELECT count(*) > 0 FROM taken;

-- renew_permits --
-- Push the leases of the permits still held ($1 keys, $2 holders) to $3 seconds from now.
UPDATE {schema}.flow_permits p SET expires_at = now() + make_interval(secs => $3)
FROM unnest($1::text[], $2::text[]) AS s(key, holder)
WHERE p.key = s.key AND p.holder = s.holder;

-- release_permits --
-- Give permits back ($1 keys, $2 holders).
DELETE FROM {schema}.flow_permits p
USING unnest($1::text[], $2::text[]) AS s(key, holder)
WHERE p.key = s.key AND p.holder = s.holder;

-- put_marks --
-- Set marks ($1 names, $2 values) for $3 seconds (the newest write wins).
INSERT INTO {schema}.flow_marks (name, value, expires_at)
SELECT name, value, now() + make_interval(secs => $3)
FROM unnest($1::text[], $2::text[]) AS s(name, value)
ON CONFLICT (name) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at;

-- get_marks --
-- The values of the unexpired marks among $1.
SELECT name, value FROM {schema}.flow_marks WHERE name = ANY($1::text[]) AND expires_at > now();
