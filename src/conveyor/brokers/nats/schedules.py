"""The NATS schedule store: dynamic schedule specs in the ``schedules`` KV bucket, one
key per schedule id.

Once-per-tick is not kept here: the scheduler publishes each tick with an idempotency key,
and the broker admits one copy through the ``keys`` bucket (broker.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import nats.js.errors
from nats.js.kv import KeyValue

from conveyor.brokers.nats.names import token, untoken

__all__ = ["NatsScheduleStore"]


class NatsScheduleStore:
    """Dynamic schedules in one KV bucket."""

    def __init__(self, bucket: Callable[[], Awaitable[KeyValue]]) -> None:
        self._bucket = bucket

    async def save_schedule(self, schedule_id: str, spec: bytes) -> None:
        await (await self._bucket()).put(token(schedule_id), spec)

    async def delete_schedule(self, schedule_id: str) -> bool:
        kv = await self._bucket()
        try:
            await kv.get(token(schedule_id))
        except nats.js.errors.KeyNotFoundError:
            return False
        await kv.purge(token(schedule_id))
        return True

    async def load_schedules(self) -> dict[str, bytes]:
        kv = await self._bucket()
        try:
            keys = await kv.keys()
        except nats.js.errors.NoKeysError:
            return {}
        out: dict[str, bytes] = {}
        for key in keys:
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                continue  # deleted meanwhile
            out[untoken(key)] = entry.value or b""
        return out
