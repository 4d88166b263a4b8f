-- 0002_task_counts: task outcomes counted by the workers (the Counters capability): the
-- totals since counting began, kept for ever, and per minute (minute = its start, Unix
-- seconds, from the workers' clocks), kept BrokerOptions.counts_kept. Each worker adds
-- its counts in one statement per heartbeat (-- record_counts --), never per task.
CREATE TABLE {schema}.task_counts (
    task   text NOT NULL,
    queue  text NOT NULL,
    status text NOT NULL,
    count  bigint NOT NULL,
    PRIMARY KEY (task, queue, status)
);

CREATE TABLE {schema}.task_count_minutes (
    minute bigint NOT NULL,
    task   text NOT NULL,
    queue  text NOT NULL,
    status text NOT NULL,
    count  bigint NOT NULL,
    PRIMARY KEY (minute, task, queue, status)
);
