"""The NATS result store: results and progress in the ``results`` KV bucket, waits pushed
by the server.

A value is ``<until: 8-byte big-endian float, 0 = forever><data>``: this server version
has no per-key TTL (nats-server 2.11 adds one), so an expired value is hidden by
:meth:`get` and removed when the bucket's ``max_age`` passes, if one is set.

``wait`` subscribes to the key's own subject (``$KV.<bucket>.r.<task>``): the put that
stores the result is delivered to it by the server, the same push a KV watch gets, but
without creating a consumer per waiter. It looks once after subscribing, so a result
stored before the wait began is found too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.kv import KV_OP, KeyValue

from conveyor.brokers import redact_url
from conveyor.brokers.base import BrokerOptions, StoredResult
from conveyor.brokers.nats.connection import connect, ensure_bucket, parse_url
from conveyor.errors import BrokerUnavailable

if TYPE_CHECKING:
    from conveyor.brokers.nats.broker import NatsBroker

__all__ = ["NatsResultStore"]

_UNTIL = struct.Struct(">d")


def wrap(data: bytes, ttl: float | None) -> bytes:
    """``data`` with the time it expires (ttl None: never)."""
    return _UNTIL.pack(0.0 if ttl is None else time.time() + max(ttl, 0.001)) + data


def unwrap(value: bytes | None) -> bytes | None:
    """The data of a stored value, or None when it expired."""
    if value is None or len(value) < _UNTIL.size:
        return None
    (until,) = _UNTIL.unpack_from(value)
    if until and until <= time.time():
        return None
    return value[_UNTIL.size :]


class NatsResultStore:
    """Results in JetStream KV: ``Conveyor(..., results="nats://localhost:4222")``."""

    def __init__(
        self, url: str, options: BrokerOptions | None = None, *, broker: NatsBroker | None = None
    ) -> None:
        self.url = url
        self._options = options or BrokerOptions()
        self._settings = parse_url(url)
        self._names = self._settings.names
        self._broker = broker
        self._own: Client | None = None
        self._kv: KeyValue | None = None

    def __repr__(self) -> str:
        return f"NatsResultStore({redact_url(self.url)!r})"

    @property
    def nc(self) -> Client:
        if self._broker is not None:
            return self._broker.nc
        if self._own is None:
            raise BrokerUnavailable(
                f"the NATS result store {redact_url(self.url)} is not connected"
            )
        return self._own

    async def kv(self) -> KeyValue:
        if self._kv is None:
            js = self.nc.jetstream()
            self._kv = await ensure_bucket(
                js, self._names.bucket("results"), self._settings.replicas
            )
        return self._kv

    async def connect(self) -> None:
        if self._broker is None and self._own is None:
            name = f"conveyor-results {socket.gethostname()}:{os.getpid()}"
            self._own = await connect(self.url, self._settings, name)
        await self.kv()

    async def close(self) -> None:
        self._kv = None
        if self._own is not None:
            with contextlib.suppress(Exception):
                await self._own.close()
            self._own = None

    def clone(self) -> NatsResultStore:
        return NatsResultStore(self.url, self._options)

    async def put(self, batch: Sequence[StoredResult]) -> None:
        kv = await self.kv()
        await asyncio.gather(
            *(kv.put(self._names.result_key(r.task_id), wrap(r.data, r.ttl)) for r in batch)
        )
        await asyncio.gather(*(self._purge(self._names.progress_key(r.task_id)) for r in batch))

    async def _read(self, key: str) -> bytes | None:
        kv = await self.kv()
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        return unwrap(entry.value)

    async def _purge(self, key: str) -> None:
        kv = await self.kv()
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            await kv.purge(key)

    async def get(self, task_id: str) -> bytes | None:
        return await self._read(self._names.result_key(task_id))

    async def wait(self, task_id: str, timeout: float) -> bytes | None:
        key = self._names.result_key(task_id)
        loop = asyncio.get_running_loop()
        landed: asyncio.Future[bytes] = loop.create_future()

        async def on_put(msg: Msg) -> None:
            if msg.headers and msg.headers.get(KV_OP):
                return  # a delete or purge
            data = unwrap(msg.data)
            if data is not None and not landed.done():
                landed.set_result(data)

        sub = await self.nc.subscribe(f"$KV.{self._names.bucket('results')}.{key}", cb=on_put)
        try:
            await self.nc.flush()  # subscribed on the server before the look below
            found = await self._read(key)
            if found is not None:
                return found
            try:
                async with asyncio.timeout(max(timeout, 0.0)):
                    return await landed
            except TimeoutError:
                return await self._read(key)  # one last look, then give up
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def delete(self, task_id: str) -> None:
        await self._purge(self._names.result_key(task_id))
        await self._purge(self._names.progress_key(task_id))

    async def set_progress(self, task_id: str, progress: bytes, ttl: float) -> None:
        kv = await self.kv()
        await kv.put(self._names.progress_key(task_id), wrap(progress, ttl))

    async def get_progress(self, task_id: str) -> bytes | None:
        return await self._read(self._names.progress_key(task_id))
