-- The event log's statements, by name (see queries.py for the format). The table is
-- created on first use by the process that first touches it, so databases made before
-- the event log existed gain it without a schema version bump.

-- create_events --
-- The event log: one encoded event per row; AUTOINCREMENT never reuses a trimmed id, so ids stay valid cursors.
CREATE TABLE IF NOT EXISTS events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    record BLOB NOT NULL
);

-- append_event --
-- Append one encoded event.
INSERT INTO events (record) VALUES (:record);

-- trim_events --
-- Keep the last :capacity events (ids are dense, so this deletes a range of the primary key).
DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - :capacity;

-- read_events --
-- Up to :limit events after id :after, oldest first.
SELECT id, record FROM events WHERE id > :after ORDER BY id LIMIT :limit;

-- recent_events --
-- The last :limit events, oldest first.
SELECT id, record FROM (SELECT id, record FROM events ORDER BY id DESC LIMIT :limit) ORDER BY id;
