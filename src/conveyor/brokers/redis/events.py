"""The Redis event store: one capped stream, ``<prefix>:events``.

Each record is one entry (field ``e``), appended with ``XADD ... MAXLEN ~ events_max``
by ``lua/append_events.lua``: a batch is one script call, so one round trip. ``~`` lets
Redis trim whole macro nodes, so the stream holds ``events_max`` entries or somewhat
more, never fewer. Entry ids (``<ms>-<seq>``) are the cursors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from conveyor.brokers.redis.scripts import lua_source

if TYPE_CHECKING:
    from conveyor.brokers.redis import RedisBroker

__all__ = ["RedisEventStore"]

_APPEND = lua_source("conveyor.brokers.redis", "append_events")


class RedisEventStore:
    """The event log of a :class:`RedisBroker` (``broker.event_store()``)."""

    def __init__(self, broker: RedisBroker, capacity: int) -> None:
        self._broker = broker
        self._capacity = capacity
        self._script: Any = None

    async def append(self, records: Sequence[bytes]) -> None:
        if not records:
            return
        client = self._broker.client
        if self._script is None:
            self._script = client.register_script(_APPEND)
        await self._script(
            keys=[self._broker.keys.events], args=[self._capacity, *records], client=client
        )

    async def read(self, after: str = "", limit: int = 100) -> list[tuple[str, bytes]]:
        start = f"({after}" if after else "-"
        rows = await self._broker.client.xrange(self._broker.keys.events, start, "+", count=limit)
        return _records(rows)

    async def recent(self, limit: int = 100) -> list[tuple[str, bytes]]:
        rows = await self._broker.client.xrevrange(self._broker.keys.events, "+", "-", count=limit)
        return _records(reversed(rows))


def _records(rows: Iterable[Any]) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for entry_id, fields in rows:
        record = fields.get(b"e")
        if record is not None:
            out.append((entry_id.decode() if isinstance(entry_id, bytes) else entry_id, record))
    return out
