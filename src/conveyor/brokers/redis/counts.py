"""The Redis task counters: one hash of totals, ``{p}:counts``, and one hash per minute,
``{p}:counts:<minute start>`` that expires ``counts_kept`` after the minute's end (keys.py).
A field is a counter's ``["task","queue","status"]`` as JSON.

The keys share the hash tag ``{p}``, so a flush is one ``MULTI``/``EXEC`` of
``HINCRBY`` (and ``EXPIREAT``) on one slot: atomic, one round trip per worker and
heartbeat, and it runs on Redis Cluster. Reading the minutes is one pipeline of
``HGETALL``, a key per minute asked (1,440 for a day).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import msgspec

from conveyor.brokers.base import CountKey, TaskCounts

if TYPE_CHECKING:
    from conveyor.brokers.redis import RedisBroker

__all__ = ["RedisCounters"]

_FIELD = msgspec.json.Encoder()
_KEY = msgspec.json.Decoder(tuple[str, str, str])


class RedisCounters:
    """The :class:`~conveyor.brokers.base.Counters` of a :class:`RedisBroker`."""

    def __init__(self, broker: RedisBroker, kept: float) -> None:
        self._broker = broker
        self._kept = kept

    async def record(self, counts: Mapping[tuple[int, str, str, str], int], now: float) -> None:
        if not counts:
            return
        oldest, keys = now - self._kept, self._broker.keys
        minutes: set[int] = set()
        async with self._broker.client.pipeline(transaction=True) as pipe:
            for (minute, task, queue, status), n in counts.items():
                field = _FIELD.encode((task, queue, status))
                pipe.hincrby(keys.counts, field, n)
                if minute >= oldest:
                    pipe.hincrby(keys.counts_minute(minute), field, n)
                    minutes.add(minute)
            for minute in minutes:
                pipe.expireat(keys.counts_minute(minute), math.ceil(minute + 60 + self._kept))
            await pipe.execute()

    async def read(self, since: float, now: float) -> TaskCounts:
        first = max(since, now - self._kept)
        # minutes that start at or after `first`, up to one past this one (a worker whose
        # clock runs a little ahead)
        starts = (
            range(math.ceil(first / 60) * 60, int(now) // 60 * 60 + 120, 60)
            if math.isfinite(first)
            else range(0)
        )
        keys = self._broker.keys
        async with self._broker.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.counts)
            for minute in starts:
                pipe.hgetall(keys.counts_minute(minute))
            replies = await pipe.execute()
        counts = TaskCounts(_decoded(replies[0]))
        for minute, reply in zip(starts, replies[1:], strict=True):
            if reply:
                counts.minutes[minute] = _decoded(reply)
        return counts


def _decoded(reply: Mapping[bytes, bytes]) -> dict[CountKey, int]:
    return {_KEY.decode(field): int(n) for field, n in reply.items()}
