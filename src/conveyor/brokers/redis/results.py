"""The Redis result store: results and progress as keys with a TTL, waits woken by pub/sub.

A waiter announces itself with ``<prefix>:waiting:<task id>`` and then reads the result;
whoever stores a result publishes it on ``<prefix>:results`` only when someone waits
(the broker's ack script does the same). No polling loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from conveyor.brokers import redact_url
from conveyor.brokers.base import BrokerOptions, StoredResult
from conveyor.brokers.redis.connection import reachable_client, split_url
from conveyor.brokers.redis.keys import Keys
from conveyor.brokers.redis.pubsub import ChannelListener
from conveyor.brokers.redis.topology import Kind
from conveyor.errors import BrokerUnavailable

if TYPE_CHECKING:
    from conveyor.brokers.redis.broker import RedisBroker

__all__ = ["RedisResultStore"]


class RedisResultStore:
    """Results in Redis with a TTL; ``wait`` is woken by pub/sub, with no polling loop."""

    def __init__(
        self, url: str, options: BrokerOptions | None = None, *, broker: RedisBroker | None = None
    ) -> None:
        self.url = url
        self._options = options or BrokerOptions()
        self._topology, prefix = split_url(url)
        self.keys = Keys(prefix)
        self._broker = broker
        self._cluster = self._topology.kind is Kind.CLUSTER
        self._own_client: Any = None
        self._waiters: dict[str, list[asyncio.Future[bytes]]] = defaultdict(list)
        self._listener = ChannelListener(
            "conveyor-redis-results",
            lambda: self.client,
            self.keys.results_channel,
            self._deliver,
            self._recheck_waiters,
        )

    @property
    def client(self) -> Any:
        if self._broker is not None:
            return self._broker.client
        if self._own_client is None:
            raise BrokerUnavailable(
                f"the Redis result store {redact_url(self.url)} is not connected"
            )
        return self._own_client

    async def connect(self) -> None:
        if self._broker is not None or self._own_client is not None:
            return
        self._own_client = await reachable_client(self.url, self._topology, self._options)

    async def close(self) -> None:
        await self._listener.close()
        for futures in self._waiters.values():
            for future in futures:
                future.cancel()
        self._waiters.clear()
        if self._own_client is not None:
            await self._own_client.aclose()
            self._own_client = None

    def clone(self) -> RedisResultStore:
        return RedisResultStore(self.url, self._options)

    async def put(self, batch: Sequence[StoredResult]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for item in batch:
                key = self.keys.result(item.task_id)
                if item.ttl is None:
                    pipe.set(key, item.data)
                else:
                    pipe.set(key, item.data, px=max(int(item.ttl * 1000), 1))
                pipe.delete(self.keys.progress(item.task_id))
                pipe.exists(self.keys.waiting(item.task_id))
            answers = await pipe.execute()
        waited = [item for item, flag in zip(batch, answers[2::3], strict=True) if flag]
        if waited and self._cluster:  # a cluster pipeline carries no PUBLISH
            for item in waited:
                await self.client.publish(
                    self.keys.results_channel, _notification(item.task_id, item.data)
                )
        elif waited:
            async with self.client.pipeline(transaction=False) as pipe:
                for item in waited:
                    pipe.publish(self.keys.results_channel, _notification(item.task_id, item.data))
                await pipe.execute()

    async def get(self, task_id: str) -> bytes | None:
        value = await self.client.get(self.keys.result(task_id))
        return bytes(value) if value is not None else None

    async def wait(self, task_id: str, timeout: float) -> bytes | None:
        await self._listener.start()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiters[task_id].append(future)
        try:
            # announce the wait, then look: a result stored before the announcement is
            # found by the GET; one stored after it is published to us
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.set(self.keys.waiting(task_id), 1, px=max(int((timeout + 5) * 1000), 1))
                pipe.get(self.keys.result(task_id))
                _, found = await pipe.execute()
            if found is not None:
                return bytes(found)
            try:
                return await asyncio.wait_for(asyncio.shield(future), timeout)
            except TimeoutError:
                return await self.get(task_id)  # one last look, then give up
        finally:
            waiters = self._waiters.get(task_id)
            if waiters is not None:
                with contextlib.suppress(ValueError):
                    waiters.remove(future)
                if not waiters:
                    del self._waiters[task_id]

    def _deliver(self, payload: bytes) -> None:
        size, _, rest = payload.partition(b":")
        length = int(size)
        task_id, data = rest[:length].decode(), rest[length:]
        for future in self._waiters.get(task_id, ()):
            if not future.done():
                future.set_result(data)

    async def _recheck_waiters(self) -> None:
        """Look up every waited result: those that landed while the listener was away."""
        for task_id in list(self._waiters):
            found = await self.get(task_id)
            if found is not None:
                for future in self._waiters.get(task_id, ()):
                    if not future.done():
                        future.set_result(found)

    async def delete(self, task_id: str) -> None:
        await self.client.delete(self.keys.result(task_id), self.keys.progress(task_id))

    async def set_progress(self, task_id: str, progress: bytes, ttl: float) -> None:
        await self.client.set(self.keys.progress(task_id), progress, px=max(int(ttl * 1000), 1))

    async def get_progress(self, task_id: str) -> bytes | None:
        value = await self.client.get(self.keys.progress(task_id))
        return bytes(value) if value is not None else None


def _notification(task_id: str, data: bytes) -> bytes:
    encoded = task_id.encode()
    return str(len(encoded)).encode() + b":" + encoded + data
