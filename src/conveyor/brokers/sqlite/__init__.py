"""``sqlite:///path.db``: the embedded broker, result store and schedule store.

No server: any number of producer and worker processes on one host share one SQLite
file in WAL mode. What makes it a real broker rather than a table:

- **Durable by default.** ``synchronous=FULL`` (``?synchronous=`` in the URL): a publish
  that returned survives a power loss. ``?busy_timeout=`` (seconds) sets SQLite's.
- **One transition, one transaction.** publish, fetch, ack, retry, dead_letter,
  release, extend_lease and reap are each one ``BEGIN IMMEDIATE`` transaction over the
  named statements of ``queries.sql``; the tables are in ``schema.sql``.
- **Leases with fencing.** A claim counts the attempt and stamps a fresh lease token;
  a zombie's late ack or renewal matches nothing and returns False. ``reap()`` requeues
  expired leases; the worker's lease thread renews on its own connection.
- **Never blocks the event loop.** All statements run on one thread per process that
  owns the connection.
- **Push-based waiting.** Fetchers and result waiters sleep on Unix datagram sockets in
  ``<db>.wake/``; a writer pings them after COMMIT, so a worker in another process starts
  a task a fraction of a millisecond after its enqueue and uses no CPU while idle.
- **Bounded growth.** Expired results, progress, idempotency keys, heartbeats and
  schedule ticks are deleted by periodic maintenance, which also keeps the WAL small.
- **Refuses network filesystems** (WAL needs shared memory on one host); set
  ``CONVEYOR_SQLITE_ALLOW_NETWORK_FS=1`` to only warn.
"""

from conveyor.brokers.sqlite.broker import SqliteBroker as SqliteBroker
from conveyor.brokers.sqlite.results import SqliteResultStore as SqliteResultStore
from conveyor.brokers.sqlite.schedules import SqliteScheduleStore as SqliteScheduleStore

__all__ = ["SqliteBroker", "SqliteResultStore", "SqliteScheduleStore"]
