"""The relay: publishes the outbox's committed rows to the app's broker, then deletes them.

One batch is one transaction on the outbox's database:

1. ``claim``: lock the oldest ``batch_size`` rows no other relay holds
   (``FOR UPDATE SKIP LOCKED``), so several relays share the table, each row going to one;
2. publish them through the app's send path (:func:`conveyor.send.publish_encoded`),
   each with its idempotency key (the task's own, or ``outbox:<task id>``);
3. ``delete`` them, and commit.

A relay killed between 2 and 3 leaves its rows committed and unlocked; the next relay
publishes them again, and the broker returns the first task for the key instead of
queueing a second (within the key's TTL: :attr:`Outbox.dedupe_ttl`). A publish that fails
rolls the batch back, and it is tried again after ``poll_interval``.

Wake-ups: a write notifies ``<schema>:outbox`` at its commit; the relay LISTENs, and also
looks every ``poll_interval`` seconds, so a lost notification costs latency, never a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING, final

import asyncpg

from conveyor.brokers import redact_secrets, redact_url
from conveyor.brokers.base import Outgoing
from conveyor.brokers.postgres.queries import channel
from conveyor.brokers.postgres.target import CONNECTION_ERRORS
from conveyor.errors import BrokerUnavailable, ConfigurationError
from conveyor.outbox.table import Outbox
from conveyor.send import publish_encoded

if TYPE_CHECKING:
    from conveyor.app import Conveyor

__all__ = ["OutboxRelay"]

log = logging.getLogger("conveyor.outbox")


@final
class OutboxRelay:
    """Publishes ``outbox``'s rows (in the database at ``dsn``) to ``app``'s broker.

    >>> relay = OutboxRelay(app, "postgresql://app@db/app", Outbox(schema="app_outbox"))
    >>> await relay.run()   # connects the app; until SIGTERM/SIGINT   # doctest: +SKIP

    Or, with the app already connected, ``await relay.serve()`` in a task you own and
    ``relay.stop()`` to end it: the batch in flight finishes (published and deleted).
    """

    def __init__(
        self,
        app: Conveyor,
        dsn: str,
        outbox: Outbox | None = None,
        *,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        migrate: bool = True,
        connect_timeout: float = 5.0,
    ) -> None:
        if not dsn.startswith(("postgresql://", "postgres://")):
            raise ConfigurationError(
                f"the outbox relay needs a postgresql:// URL, not {redact_url(dsn)}"
            )
        if batch_size < 1 or poll_interval <= 0:
            raise ConfigurationError("OutboxRelay: batch_size >= 1 and poll_interval > 0")
        self.app = app
        self.outbox = outbox or Outbox()
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self._dsn = dsn
        self._migrate = migrate
        self._connect_timeout = connect_timeout
        self._stopping = False
        self._wake = asyncio.Event()
        self.published = 0
        """Rows published and deleted by this relay so far."""

    def stop(self) -> None:
        """Ask :meth:`serve` to return after the batch in flight."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Connect the app, relay until SIGTERM or SIGINT, then close the app
        (``conveyor outbox relay``)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        try:
            async with self.app:
                await self.serve()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def serve(self) -> None:
        """Relay until :meth:`stop`; a lost database connection is reopened with backoff."""
        pause = 0.1
        while not self._stopping:
            try:
                conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
            except CONNECTION_ERRORS as exc:
                log.warning("outbox relay: cannot reach %s: %s", self._shown, self._say(exc))
                await self._pause(pause)
                pause = min(pause * 2, 5.0)
                continue
            pause = 0.1
            try:
                if self._migrate:
                    await self.outbox.upgrade(conn)
                await conn.add_listener(channel(self.outbox.schema, "outbox"), self._notified)
                log.info("outbox relay: relaying %s.outbox", self.outbox.schema)
                await self._relay(conn)
            except CONNECTION_ERRORS as exc:
                log.warning("outbox relay: lost %s: %s", self._shown, self._say(exc))
            finally:
                with contextlib.suppress(*CONNECTION_ERRORS):
                    await conn.close(timeout=self._connect_timeout)

    async def relay_batch(self, conn: asyncpg.Connection) -> int:
        """Claim, publish and delete one batch; returns how many rows it relayed."""
        queries = self.outbox.queries
        async with conn.transaction():
            rows = await conn.fetch(queries.claim, self.batch_size)
            if not rows:
                return 0
            batch = [
                Outgoing(
                    task_id=row["task_id"],
                    queue=row["queue"],
                    body=row["body"],
                    priority=row["priority"],
                    not_before=row["not_before"],
                    key=row["key"],
                    key_ttl=row["key_ttl"],
                    reused_id=row["reused_id"],
                )
                for row in rows
            ]
            await publish_encoded(self.app._connections.current(), batch)
            await conn.execute(queries.delete, [row["id"] for row in rows])
        self.published += len(rows)
        return len(rows)

    async def _relay(self, conn: asyncpg.Connection) -> None:
        while not self._stopping:
            self._wake.clear()  # before the claim: a write committed during it wakes us again
            try:
                count = await self.relay_batch(conn)
            except BrokerUnavailable as exc:
                log.warning("outbox relay: the broker refused a batch; retrying: %s", exc)
                count = 0
            if count < self.batch_size:
                await self._pause(self.poll_interval)

    async def _pause(self, seconds: float) -> None:
        """Until a notification, :meth:`stop`, or ``seconds``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    def _notified(self, conn: object, pid: int, name: str, payload: str) -> None:
        self._wake.set()

    @property
    def _shown(self) -> str:
        return redact_url(self._dsn)

    def _say(self, exc: BaseException) -> str:
        return redact_secrets(f"{type(exc).__name__}: {exc}", self._dsn)
