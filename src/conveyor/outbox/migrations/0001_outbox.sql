-- The outbox: tasks written in the application's transactions, waiting for a relay to
-- publish them to the app's broker. One row per task, its message already encoded (and
-- signed): the relay publishes the bytes as they are. `id` orders the relay's batches.
CREATE TABLE {schema}.outbox (
    id bigserial PRIMARY KEY,
    task_id text NOT NULL,
    queue text NOT NULL,
    body bytea NOT NULL,
    priority integer NOT NULL,
    not_before double precision NOT NULL,  -- Unix time; 0: at once
    key text NOT NULL,                     -- the idempotency key the relay publishes with
    key_ttl double precision NOT NULL,
    reused_id boolean NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now()
);
