-- Every statement of the outbox, by name: `-- name --`, one description line, the query.
-- {schema} is the quoted schema, {channel} the schema's name (the NOTIFY channel is
-- `<schema>:outbox`); pg_notify inside a statement is delivered at COMMIT, so a relay is
-- never woken for a row it cannot see yet, and never for a rolled-back one.

-- write --
-- Insert encoded messages ($1 task ids, $2 queues, $3 bodies, $4 priorities, $5 not-before times, $6 keys, $7 key ttls, $8 reused ids) in the caller's transaction, and wake the relays at its commit.
WITH written AS (
    INSERT INTO {schema}.outbox
        (task_id, queue, body, priority, not_before, key, key_ttl, reused_id)
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::bytea[], $4::int[], $5::float8[], $6::text[], $7::float8[],
        $8::bool[]
    )
    RETURNING id
)
SELECT pg_notify('{channel}:outbox', count(*)::text) FROM written;

-- claim --
-- Lock the $1 oldest rows no other relay holds (SKIP LOCKED), until this transaction ends.
SELECT id, task_id, queue, body, priority, not_before, key, key_ttl, reused_id
FROM {schema}.outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED;

-- delete --
-- Delete published rows ($1 ids), which this transaction holds locked.
DELETE FROM {schema}.outbox WHERE id = ANY($1::bigint[]);
