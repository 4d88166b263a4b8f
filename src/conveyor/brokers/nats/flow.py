"""Flow control on JetStream (``Capability.FLOW``): token buckets, leased semaphores and
marks in the ``flow`` KV bucket, each change a compare-and-set on the entry's revision
(a writer that lost the race reads again), so every worker shares one limit.

JetStream has no server clock a client can read: times are the workers' clocks
(``time.time()``), as the task records' due times are. Keep the hosts' clocks in sync
(NTP); a skewed host sees buckets fuller or emptier by its skew times the rate.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec
import nats.js.errors
from nats.js.kv import KeyValue

from conveyor.brokers.nats.names import token
from conveyor.errors import BrokerUnavailable
from conveyor.flow import take_bucket

__all__ = ["NatsFlow"]

T = TypeVar("T")

# compare-and-set rounds before a step gives up (each lost round means another worker's
# step went through: the limit is busy, not stuck)
_ROUNDS = 100


class NatsFlow:
    """The ``flow`` bucket's steps, for :class:`~conveyor.brokers.nats.NatsBroker`."""

    def __init__(
        self, bucket: Callable[[], Awaitable[KeyValue]], now: Callable[[], float] = time.time
    ) -> None:
        self._bucket = bucket
        self._now = now

    async def _change(self, key: str, step: Callable[[Any], tuple[Any, T]]) -> T:
        """Apply ``step`` (old value or None -> new value, answer) with compare-and-set."""
        kv = await self._bucket()
        name = token(key)
        for _ in range(_ROUNDS):
            try:
                entry = await kv.get(name)
            except nats.js.errors.KeyNotFoundError:
                old, revision = None, None
            else:
                old = None if entry.value is None else msgspec.msgpack.decode(entry.value)
                revision = entry.revision
            new, answer = step(old)
            data = msgspec.msgpack.encode(new)
            try:
                if revision is None:
                    await kv.create(name, data)
                else:
                    await kv.update(name, data, last=revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
            return answer
        raise BrokerUnavailable(f"flow key {key!r}: {_ROUNDS} compare-and-set rounds lost")

    async def take_token(self, key: str, rate: float, burst: int) -> float:
        def take(old: Any) -> tuple[Any, float]:
            now = self._now()
            tokens, at = (float(burst), now) if old is None else (old[0], old[1])
            tokens, wait, at = take_bucket(tokens, at, now, rate, burst)
            return [tokens, at], wait

        return await self._change(f"rate.{key}", take)

    async def acquire_permit(self, key: str, limit: int, holder: str, lease: float) -> bool:
        def acquire(old: Any) -> tuple[Any, bool]:
            now = self._now()
            held = {h: until for h, until in (old or {}).items() if until > now}
            if holder not in held and len(held) >= limit:
                return held, False
            held[holder] = now + lease
            return held, True

        return await self._change(f"permits.{key}", acquire)

    async def renew_permits(self, permits: Sequence[tuple[str, str]], lease: float) -> None:
        by_key: dict[str, set[str]] = {}
        for key, holder in permits:
            by_key.setdefault(key, set()).add(holder)
        for key, holders in by_key.items():

            def renew(old: Any, holders: set[str] = holders) -> tuple[Any, None]:
                until = self._now() + lease
                held = dict(old or {})
                for holder in holders & held.keys():
                    held[holder] = until
                return held, None

            await self._change(f"permits.{key}", renew)

    async def release_permits(self, permits: Sequence[tuple[str, str]]) -> None:
        by_key: dict[str, set[str]] = {}
        for key, holder in permits:
            by_key.setdefault(key, set()).add(holder)
        for key, holders in by_key.items():

            def release(old: Any, holders: set[str] = holders) -> tuple[Any, None]:
                held = {h: until for h, until in (old or {}).items() if h not in holders}
                return held, None

            await self._change(f"permits.{key}", release)

    async def put_marks(self, marks: Mapping[str, str], ttl: float) -> None:
        kv = await self._bucket()
        until = self._now() + ttl
        for name, value in marks.items():
            await kv.put(token(f"mark.{name}"), msgspec.msgpack.encode([value, until]))

    async def get_marks(self, names: Sequence[str]) -> list[str | None]:
        kv = await self._bucket()
        now, out = self._now(), list[str | None]()
        for name in names:
            try:
                entry = await kv.get(token(f"mark.{name}"))
            except nats.js.errors.KeyNotFoundError:
                out.append(None)
                continue
            value, until = msgspec.msgpack.decode(entry.value or b"\x92\xa0\x00")
            out.append(value if until > now else None)
        return out
