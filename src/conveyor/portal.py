"""Per-loop connections of an app, and the sync portal that serves ``kiq_sync``.

A broker and its result store connect on one event loop (:class:`Connection`). The app
has the one ``async with app`` opened, and the portal's: a background thread running its
own loop with its own connection, so that synchronous code can enqueue and wait, with or
without a loop in the caller's thread, from many threads at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from conveyor.batching import Batcher
from conveyor.brokers.base import Broker, Outgoing, ResultStore, own_result_store
from conveyor.errors import ConveyorError

__all__ = ["Connection", "Connections", "SyncPortal"]

T = TypeVar("T")


@dataclass(slots=True)
class Connection:
    """A broker and result store connected on one event loop, and the batcher that
    publishes through them."""

    loop: asyncio.AbstractEventLoop
    broker: Broker
    result_store: ResultStore
    publisher: Batcher[Outgoing, str]

    @property
    def results_apart(self) -> bool:
        """The result store is not the broker's own (``results=`` another server)."""
        return self.result_store is not own_result_store(self.broker)

    @classmethod
    async def open(cls, broker: Broker, result_store: ResultStore) -> Connection:
        await broker.connect()
        # looked up per batch, not bound once: a test may stand a flaky publish in for it
        publisher: Batcher[Outgoing, str] = Batcher(
            lambda batch: broker.publish(batch), max_in_flight=2
        )
        connection = cls(asyncio.get_running_loop(), broker, result_store, publisher)
        if connection.results_apart:
            try:
                await result_store.connect()
            except BaseException:
                await broker.close()
                raise
        return connection

    async def close(self) -> None:
        await self.publisher.aclose()
        if self.results_apart:
            await self.result_store.close()
        await self.broker.close()


class Connections:
    """An app's connections: the main one (``async with app``) and the portal's.

    ``templates`` gives the unconnected broker and result store the app was built with;
    they are read when connecting (taskiq's compat layer may swap the store before)."""

    def __init__(self, templates: Callable[[], tuple[Broker, ResultStore]]) -> None:
        self._templates = templates
        self.main: Connection | None = None
        self._portal: SyncPortal | None = None
        self._lock = threading.Lock()

    async def connect(self) -> None:
        if self.main is None:
            self.main = await Connection.open(*self._templates())

    async def close(self) -> None:
        if self._portal is not None:
            portal, self._portal = self._portal, None
            await asyncio.to_thread(portal.close)
        main, self.main = self.main, None
        if main is not None:
            await main.close()

    def current(self) -> Connection:
        """The connection of the running event loop; raises when there is none."""
        loop = asyncio.get_running_loop()
        main = self.main
        if main is not None and main.loop is loop:
            return main
        portal = self._portal
        if portal is not None and portal.connection is not None and portal.connection.loop is loop:
            return portal.connection
        if main is None:
            raise ConveyorError(
                "Conveyor is not connected: use `async with app:` (or `await app.connect()`) "
                "before enqueueing or waiting for results; from sync code use kiq_sync()"
            )
        raise ConveyorError("this Conveyor app was connected on another event loop")

    def portal(self) -> SyncPortal:
        """The background event loop that serves the ``*_sync`` methods (started once)."""
        with self._lock:
            if self._portal is None:
                self._portal = SyncPortal(self._templates)
            return self._portal

    def refuse_blocking_on_own_loop(self, what: str) -> None:
        """Raise if called on the thread running the main connection's loop, which a
        blocking wait would freeze (its worker could then never produce the result)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self.main is not None and self.main.loop is loop:
            raise RuntimeError(
                f"{what} would block this app's own event loop; await the async form"
            )


class SyncPortal:
    """A background thread running an event loop, with its own broker connection (clones
    of the app's), so that synchronous code can enqueue and wait. Started on first use,
    stopped by ``app.close()`` or at exit (its thread is a daemon)."""

    def __init__(self, templates: Callable[[], tuple[Broker, ResultStore]]) -> None:
        self._templates = templates
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.connection: Connection | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="conveyor-portal", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._connect())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        if self.connection is not None:
            self._loop.run_until_complete(self.connection.close())
        self._loop.close()

    async def _connect(self) -> None:
        broker, store = self._templates()
        own_store = store is own_result_store(broker)
        clone = broker.clone()
        self.connection = await Connection.open(
            clone, clone.result_store() if own_store else store.clone()
        )

    def call(self, factory: Callable[[], Awaitable[T]]) -> T:
        """Run ``factory()`` on the portal loop and block this thread for its value."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("a *_sync method was called from inside the portal loop")

        async def run() -> T:
            return await factory()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result()

    def close(self) -> None:
        """Stop the loop, closing the portal's connections."""
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
