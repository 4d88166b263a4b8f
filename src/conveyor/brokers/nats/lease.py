"""Leases: a lease is the consumer's AckWait, renewed by an in-progress ack (``+WPI``)
sent to the delivery's reply subject, after the job record confirmed that this delivery
still owns the task (JetStream would take a ``+WPI`` from a zombie's older delivery too).

A ``+WPI`` restarts the whole AckWait: an extension is always one lease long, whatever
``seconds`` asks (Redis caps it the same way).

:class:`NatsLeaseKeeper` renews from the worker's lease thread, on an event loop and a
connection of its own, so renewals go on while the worker's event loop is blocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from nats.aio.client import Client
from nats.js.kv import KeyValue

from conveyor.brokers.base import Delivery
from conveyor.brokers.nats.connection import NatsSettings, connect, ensure_bucket
from conveyor.brokers.nats.records import Jobs, Record

__all__ = ["Lease", "NatsLeaseKeeper", "owns", "renew_leases"]


@dataclass(frozen=True, slots=True)
class Lease:
    """A delivery's token: the message's stream sequence, its delivery count and the
    subject its acks go to."""

    seq: int
    delivered: int
    reply: str


def owns(record: Record, lease: Lease) -> bool:
    """Whether ``lease`` is the record's current lease."""
    return record.st == "l" and record.s == lease.seq and record.t == lease.delivered


async def renew_leases(
    nc: Client, jobs: Jobs, deliveries: Sequence[Delivery], seconds: float
) -> list[bool]:
    """Send ``+WPI`` for each delivery that still owns its task; False for the others.
    ``seconds <= 0`` ends the lease now instead: a ``-NAK`` that leaves the record leased,
    so the next claim counts the crash, as when AckWait runs out."""
    signal = b"+WPI" if seconds > 0 else b"-NAK"

    async def one(delivery: Delivery) -> bool:
        lease: Lease = delivery.token
        found = await jobs.get(delivery.task_id)
        if not isinstance(found, tuple) or not owns(found[0], lease):
            return False
        await nc.publish(lease.reply, signal)
        return True

    out = list(await asyncio.gather(*(one(d) for d in deliveries)))
    await nc.flush()
    return out


class NatsLeaseKeeper:
    """Renews leases from the lease thread over its own connection and event loop."""

    def __init__(self, url: str, settings: NatsSettings, timeout: float = 10.0) -> None:
        self._url = url
        self._settings = settings
        self._timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._nc: Client | None = None
        self._jobs: Jobs | None = None
        self._lock = threading.Lock()

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="conveyor-nats-lease", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    async def _connected(self) -> tuple[Client, Jobs]:
        if self._nc is None or self._jobs is None:
            name = f"conveyor-lease {socket.gethostname()}:{os.getpid()}"
            nc = await connect(self._url, self._settings, name)
            kv: KeyValue = await ensure_bucket(
                nc.jetstream(), self._settings.names.bucket("jobs"), self._settings.replicas
            )
            self._nc, self._jobs = nc, Jobs(kv)
        return self._nc, self._jobs

    async def _renew(self, deliveries: Sequence[Delivery], seconds: float) -> list[bool]:
        nc, jobs = await self._connected()
        return await renew_leases(nc, jobs, deliveries, seconds)

    def renew(self, deliveries: Sequence[Delivery], seconds: float) -> list[bool]:
        if not deliveries:
            return []
        loop = self._start()
        future = asyncio.run_coroutine_threadsafe(self._renew(deliveries, seconds), loop)
        return future.result(self._timeout)

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def shut() -> None:
            if self._nc is not None:
                with contextlib.suppress(Exception):
                    await self._nc.close()
            self._nc = self._jobs = None

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), loop).result(self._timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(self._timeout)
        loop.close()
