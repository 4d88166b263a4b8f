"""The NATS task counters: two KV buckets, written compare-and-set.

==================  ===========================  ======================================
bucket              key                          value (msgpack)
==================  ===========================  ======================================
``P_counts``        ``total``                    ``[[task, queue, status, n], ...]``:
                                                 every count since counting began
``P_count_minutes`` ``<minute start>``           the same rows for one minute; the
                                                 bucket's TTL (``counts_kept`` + 60 s)
                                                 drops a minute that long after its
                                                 last write
==================  ===========================  ======================================

JetStream KV has no increment, so a flush reads each key it adds to (the total and
usually one minute) and writes it back at the revision it read; a write that finds the
key moved (another worker flushed meanwhile) reads it again, up to ``_ROUNDS`` times.
Each key is one CAS: a connection lost between the total and a minute, then the retried
flush, counts the part already written twice (telemetry, not a ledger: the other
brokers write a flush in one transaction or ``MULTI``).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Mapping

import msgspec
import nats.js.errors
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue

from conveyor.brokers.base import CountKey, TaskCounts
from conveyor.brokers.nats.names import Names
from conveyor.errors import BrokerUnavailable

__all__ = ["NatsCounters"]

_Rows = list[tuple[str, str, str, int]]
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Rows).decode
_TOTAL = "total"
# how many times a flush re-reads a key that another worker wrote first
_ROUNDS = 50
# more minutes than this are read with one scan of the bucket rather than a get each
_GETS_MAX = 60


class NatsCounters:
    """The :class:`~conveyor.brokers.base.Counters` of a :class:`NatsBroker`."""

    def __init__(self, js: JetStreamContext, names: Names, replicas: int, kept: float) -> None:
        self._js = js
        self._names = names
        self._replicas = replicas
        self._kept = kept
        self._totals: KeyValue | None = None
        self._minutes: KeyValue | None = None

    async def _buckets(self) -> tuple[KeyValue, KeyValue]:
        if self._totals is None or self._minutes is None:
            self._totals = await self._bucket("counts", None)
            self._minutes = await self._bucket("count_minutes", self._kept + 60.0)
        return self._totals, self._minutes

    async def _bucket(self, role: str, ttl: float | None) -> KeyValue:
        name = self._names.bucket(role)
        try:
            return await self._js.key_value(name)
        except nats.js.errors.BucketNotFoundError:
            config = api.KeyValueConfig(
                bucket=name,
                history=1,
                ttl=ttl,
                storage=api.StorageType.FILE,
                replicas=self._replicas,
            )
            return await self._js.create_key_value(config)

    async def record(self, counts: Mapping[tuple[int, str, str, str], int], now: float) -> None:
        if not counts:
            return
        totals_kv, minutes_kv = await self._buckets()
        oldest = now - self._kept
        total: dict[CountKey, int] = {}
        minutes: dict[int, dict[CountKey, int]] = {}
        for (minute, task, queue, status), n in counts.items():
            key = (task, queue, status)
            total[key] = total.get(key, 0) + n
            if minute >= oldest:
                bucket = minutes.setdefault(minute, {})
                bucket[key] = bucket.get(key, 0) + n
        for minute, added in sorted(minutes.items()):
            await _add(minutes_kv, str(minute), added)
        await _add(totals_kv, _TOTAL, total)

    async def read(self, since: float, now: float) -> TaskCounts:
        totals_kv, minutes_kv = await self._buckets()
        counts = TaskCounts(_rows_of(await _get(totals_kv, _TOTAL)))
        first = max(since, now - self._kept)
        if not math.isfinite(first):
            return counts
        start = math.ceil(first / 60) * 60
        starts = range(start, int(now) // 60 * 60 + 120, 60)  # one past: clocks differ
        if len(starts) <= _GETS_MAX:
            values = await asyncio.gather(*(_get(minutes_kv, str(m)) for m in starts))
            found = [(m, v) for m, v in zip(starts, values, strict=True) if v is not None]
        else:
            from conveyor.brokers.nats.connection import latest_values

            scanned = await latest_values(self._js, self._names.bucket("count_minutes"))
            found = sorted((int(k), v) for k, v in scanned if k.isdigit() and int(k) >= start)
        for minute, value in found:
            counts.minutes[minute] = _rows_of(value)
        return counts


async def _get(kv: KeyValue, key: str) -> bytes | None:
    try:
        entry = await kv.get(key)
    except nats.js.errors.KeyNotFoundError:
        return None
    return entry.value or None


def _rows_of(value: bytes | None) -> dict[CountKey, int]:
    return {} if value is None else {(t, q, s): n for t, q, s, n in _decode(value)}


async def _add(kv: KeyValue, key: str, added: dict[CountKey, int]) -> None:
    """Add ``added`` to the counts at ``key``, compare-and-set."""
    for _ in range(_ROUNDS):
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            entry = None
        value = entry.value if entry is not None else None
        merged = _rows_of(value)
        for counted, n in added.items():
            merged[counted] = merged.get(counted, 0) + n
        data = _encode([(*counted, n) for counted, n in merged.items()])
        try:
            if entry is None or entry.revision is None:
                await kv.create(key, data)
            else:
                await kv.update(key, data, last=entry.revision)
            return
        except nats.js.errors.KeyWrongLastSequenceError:
            await asyncio.sleep(random.uniform(0.0, 0.01))  # sleep: spread the next try
    raise BrokerUnavailable(
        f"NATS task counts {key!r}: other flushes wrote it first {_ROUNDS} times in a row; "
        "these counts go with the next flush"
    )
