"""The Redis schedule store: dynamic schedule specs in one hash, ``<prefix>:schedules``.

Once-per-tick is not kept here: the scheduler publishes each tick with an idempotency
key, and the broker's publish admits one copy (see ``conveyor.scheduler.loop``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.brokers.redis.broker import RedisBroker

__all__ = ["RedisScheduleStore"]


class RedisScheduleStore:
    """Dynamic schedules in one hash."""

    def __init__(self, broker: RedisBroker) -> None:
        self._broker = broker

    async def save_schedule(self, schedule_id: str, spec: bytes) -> None:
        await self._broker.client.hset(self._broker.keys.schedules, schedule_id, spec)

    async def delete_schedule(self, schedule_id: str) -> bool:
        return bool(await self._broker.client.hdel(self._broker.keys.schedules, schedule_id))

    async def load_schedules(self) -> dict[str, bytes]:
        raw = await self._broker.client.hgetall(self._broker.keys.schedules)
        return {k.decode(): bytes(v) for k, v in raw.items()}
