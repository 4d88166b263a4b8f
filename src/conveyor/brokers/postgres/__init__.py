"""``postgresql://`` (also ``postgres://``): the broker, result store, schedule store and
event log in one schema of a PostgreSQL database, on asyncpg.

- **Claims** are ``SELECT ... FOR UPDATE SKIP LOCKED`` in batches sized to the worker's
  free slots; leases and due times run on the server's clock (``now()``), and a lease
  token from a sequence fences every settlement, so a zombie's late ack changes nothing.
- **Wake-ups** are LISTEN/NOTIFY (``listener.py``), sent inside the statement that made
  work ready and delivered at COMMIT, with a ``fetch_wait`` look as fallback.
- **Schema** is versioned: named SQL files in ``migrations/`` (``migrate.py``), applied at
  connect or by ``conveyor db upgrade APP``; ``?prefix=`` names the schema.
- **Faults**: a lost connection is retried (``connection.py``), the listener reconnects,
  and the worker's lease thread renews on its own connection (``lease.py``).
- **Transactional enqueue**: :meth:`PostgresBroker.publish_in` writes in the caller's
  transaction (``task.with_options(connection=conn)`` or ``session=session``).

See docs/postgres.md.
"""

from conveyor.brokers.postgres.broker import PostgresBroker as PostgresBroker
from conveyor.brokers.postgres.results import PostgresResultStore as PostgresResultStore
from conveyor.brokers.postgres.schedules import PostgresScheduleStore as PostgresScheduleStore

__all__ = ["PostgresBroker", "PostgresResultStore", "PostgresScheduleStore"]
