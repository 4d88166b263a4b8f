"""The outbox: enqueue with no window on any broker, through a table in your PostgreSQL.

On a broker that is not your database (Redis, RabbitMQ, NATS, SQLite), a task written to
the outbox in your transaction commits or rolls back with your rows; a relay
(``conveyor outbox relay APP --dsn URL``) publishes the committed rows and deletes them.

>>> outbox = Outbox(schema="app_outbox")
>>> async with conn.transaction():                                   # doctest: +SKIP
...     await conn.execute("INSERT INTO emails ...")
...     handle = await send_email.with_options(outbox=outbox, connection=conn).kiq(1)

See docs/transactional-enqueue.md for the guarantees and their bound (the key TTL).
"""

from conveyor.outbox.relay import OutboxRelay as OutboxRelay
from conveyor.outbox.table import Outbox as Outbox

__all__ = ["Outbox", "OutboxRelay"]
