"""A clock a test drives: no sleeping through real time to reach a lease, a backoff or a
schedule.

>>> clock = ManualClock()
>>> app = Conveyor("memory://", clock=clock)              # doctest: +SKIP
>>> clock.advance(30)        # wall and monotonic time move together; due sleepers wake

``now()`` and ``monotonic()`` move only in :meth:`ManualClock.advance`; a coroutine in
``await clock.sleep(s)`` wakes once the clock has been advanced ``s`` past the moment it
began to sleep. Server brokers (Redis, PostgreSQL) keep leases by the server's clock,
which no test can move: drive those with short real durations instead.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading

__all__ = ["ManualClock"]


class ManualClock:
    """Wall and monotonic time that move only when :meth:`advance` is called."""

    def __init__(self, now: float = 1_700_000_000.0, monotonic: float = 0.0) -> None:
        self._now = now
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._sleepers: list[
            tuple[float, int, asyncio.AbstractEventLoop, asyncio.Future[None]]
        ] = []

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has been advanced ``seconds`` (0 or less: one loop turn)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            entry = (self._monotonic + seconds, next(self._seq), loop, future)
            heapq.heappush(self._sleepers, entry)
        await future

    def advance(self, seconds: float) -> None:
        """Move both clocks forward and wake every sleeper now due (from any thread)."""
        if seconds < 0:
            raise ValueError("a ManualClock only moves forward")
        with self._lock:
            self._now += seconds
            self._monotonic += seconds
            due = []
            while self._sleepers and self._sleepers[0][0] <= self._monotonic:
                due.append(heapq.heappop(self._sleepers))
        for _, _, loop, future in due:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_wake, future)

    async def run(self, seconds: float, step: float = 0.01) -> None:
        """Advance ``seconds`` in ``step``s, letting woken coroutines run after each."""
        moved = 0.0
        while moved < seconds:
            delta = min(step, seconds - moved)
            self.advance(delta)
            moved += delta
            for _ in range(3):  # a woken sleeper, then what it awaits next
                await asyncio.sleep(0)

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting (a test can wait until a loop reaches its sleep)."""
        with self._lock:
            return sum(not future.done() for _, _, _, future in self._sleepers)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
