"""LISTEN/NOTIFY wake-ups: one connection per broker (per event loop) listens on the
schema's three channels and wakes the coroutines waiting in this process.

=========================  =====================  ==========================================
channel                    payload                who waits
=========================  =====================  ==========================================
``<prefix>:queue``         a queue name           a fetch on an empty queue
``<prefix>:result``        a task id              ``ResultStore.wait``
``<prefix>:abort``         a task id              ``wait_abort_signal`` (the worker)
=========================  =====================  ==========================================

Notifications are hints. A statement sends them with ``pg_notify`` and PostgreSQL delivers
them at COMMIT (never for a rolled-back enqueue), but one is lost while this connection is
down, so every waiter also looks again after a bounded pause (``fetch_wait``): a lost
notification costs latency, never a task. When the connection is lost (or fails its
health check), the listener reconnects with backoff and wakes every waiter, since
something may have been missed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator

import asyncpg

from conveyor.brokers.base import AbortSignalBuffer, BrokerOptions
from conveyor.brokers.postgres.queries import channel
from conveyor.brokers.postgres.target import CONNECTION_ERRORS, PostgresTarget
from conveyor.errors import BrokerUnavailable

__all__ = ["HEALTH_CHECK_EVERY", "Listener"]

log = logging.getLogger("conveyor.brokers.postgres")

_RECONNECT_ERRORS: tuple[type[BaseException], ...] = (BrokerUnavailable, *CONNECTION_ERRORS)

HEALTH_CHECK_EVERY = 5.0
"""Seconds between pings of an idle listening connection: a connection a network fault
dropped silently is found and replaced within about this long."""


class Listener:
    """Wakes this event loop's waiters from NOTIFY; owns one connection and the task that
    keeps it alive (started by :meth:`start`, stopped and awaited by :meth:`stop`)."""

    def __init__(self, target: PostgresTarget, options: BrokerOptions) -> None:
        self._target = target
        self._options = options
        self._channels = {
            channel(target.schema, "queue"): self._on_queue,
            channel(target.schema, "result"): self._on_result,
            channel(target.schema, "abort"): self._on_abort,
        }
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._queues: dict[str, set[asyncio.Event]] = {}
        self._results: dict[str, set[asyncio.Event]] = {}
        self.aborts = AbortSignalBuffer()
        self.listening = asyncio.Event()
        """Set while the connection listens (tests wait on it after a fault)."""

    async def start(self) -> None:
        """Listen now (so a publish right after connect wakes a fetch), then keep it up."""
        self.aborts = AbortSignalBuffer(asyncio.get_running_loop())
        with contextlib.suppress(*_RECONNECT_ERRORS):
            await self._connect()
        self._task = asyncio.create_task(self._keep_alive(), name="conveyor-pg-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._discard()

    # -- waiting -------------------------------------------------------------------

    @contextlib.contextmanager
    def watch_queues(self, queues: Iterable[str]) -> Iterator[asyncio.Event]:
        """An event set when a message may have become ready in one of ``queues``.
        Enter it before looking, so a notification between the look and the wait wakes."""
        event = asyncio.Event()
        names = list(queues)
        for name in names:
            self._queues.setdefault(name, set()).add(event)
        try:
            yield event
        finally:
            for name in names:
                waiting = self._queues.get(name)
                if waiting is not None:
                    waiting.discard(event)
                    if not waiting:
                        del self._queues[name]

    @contextlib.contextmanager
    def watch_result(self, task_id: str) -> Iterator[asyncio.Event]:
        """An event set when a result for ``task_id`` may have been stored."""
        event = asyncio.Event()
        self._results.setdefault(task_id, set()).add(event)
        try:
            yield event
        finally:
            waiting = self._results.get(task_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._results[task_id]

    def wake_fetchers(self) -> None:
        """Wake every waiting fetch (interrupt_fetch, or after a reconnect)."""
        for events in self._queues.values():
            for event in events:
                event.set()

    def _wake_all(self) -> None:
        self.wake_fetchers()
        for events in self._results.values():
            for event in events:
                event.set()
        self.aborts.wake()

    # -- notifications -------------------------------------------------------------

    def _on_queue(self, conn: object, pid: int, name: str, payload: str) -> None:
        for event in self._queues.get(payload, ()):
            event.set()

    def _on_result(self, conn: object, pid: int, name: str, payload: str) -> None:
        for event in self._results.get(payload, ()):
            event.set()

    def _on_abort(self, conn: object, pid: int, name: str, payload: str) -> None:
        self.aborts.add([payload])

    # -- the connection ------------------------------------------------------------

    async def _connect(self) -> None:
        conn = await self._target.connect()
        try:
            for name, callback in self._channels.items():
                await conn.add_listener(name, callback)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._on_terminated)
        self._conn = conn
        self._lost.clear()
        self.listening.set()

    def _on_terminated(self, conn: object) -> None:
        self._lost.set()

    async def _discard(self) -> None:
        self.listening.clear()
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except CONNECTION_ERRORS:
                conn.terminate()

    async def _keep_alive(self) -> None:
        pause = self._options.fault_pause
        while True:
            if self._conn is None:
                try:
                    await self._connect()
                except _RECONNECT_ERRORS as exc:
                    log.debug("postgres listener: %s; retrying in %.2f s", exc, pause)
                    await asyncio.sleep(pause)  # sleep: backoff until the server is back
                    pause = min(pause * 2, self._options.fault_pause_max)
                    continue
                pause = self._options.fault_pause
                self._wake_all()  # what was notified while we were away is unknown
            if await self._healthy():
                continue
            log.warning(
                "postgres listener of %s lost its connection; reconnecting", self._target.shown
            )
            await self._discard()
            self._wake_all()

    async def _healthy(self) -> bool:
        """Wait for the connection to end, or ping it after HEALTH_CHECK_EVERY idle."""
        try:
            async with asyncio.timeout(HEALTH_CHECK_EVERY):
                await self._lost.wait()
            return False
        except TimeoutError:
            pass
        conn = self._conn
        if conn is None or conn.is_closed():
            return False
        try:
            async with asyncio.timeout(HEALTH_CHECK_EVERY):
                await conn.execute("SELECT 1")
        except CONNECTION_ERRORS:
            return False
        return True
