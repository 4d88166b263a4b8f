"""The clock every timer in the core reads, so tests can drive time themselves.

``now()`` is wall time (timestamps, due times shared between processes), ``monotonic()``
measures intervals inside a process, ``sleep()`` waits. :class:`SystemClock` is the real
one; ``conveyor.testing.ManualClock`` moves only when a test tells it to.

>>> clock = SystemClock()
>>> clock.monotonic() <= clock.monotonic()
True
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

__all__ = ["Clock", "FaultPause", "Seconds", "SystemClock", "seconds", "sleep_unless"]


Seconds = float | timedelta
"""A duration in the public API: seconds, or a :class:`~datetime.timedelta`."""


def seconds(value: Seconds | None, what: str = "duration") -> float | None:
    """Normalise a public duration (float seconds or timedelta) to float seconds; raise
    ``TypeError`` naming ``what`` for anything else (a string, a bool)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise TypeError(
        f"{what} must be seconds (a number or a timedelta), got {type(value).__name__} {value!r}"
    )


class Clock(Protocol):
    """Time as the core reads it."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for intervals in one process."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock: :func:`time.time`, :func:`time.monotonic`, :func:`asyncio.sleep`."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(slots=True)
class FaultPause:
    """The pause before trying again after a fault (a broker call that failed): ``first``
    seconds, doubling up to ``cap``, back to ``first`` after a success. The one backoff of
    the worker's fetch loop, abort watcher and settlements, and of the pub/sub listeners.

    >>> pause = FaultPause(SystemClock(), first=0.05, cap=5.0)
    >>> await pause.wait()          # doctest: +SKIP
    """

    clock: Clock
    first: float = 0.05
    cap: float = 5.0
    current: float = 0.0

    def __post_init__(self) -> None:
        self.current = self.first

    def reset(self) -> None:
        """A success: the next fault waits ``first`` again."""
        self.current = self.first

    async def wait(self, unless: asyncio.Event | None = None) -> float:
        """Sleep the current pause (cut short when ``unless`` is set), double the next;
        returns how long it meant to sleep."""
        slept = self.current
        self.current = min(self.current * 2, self.cap)
        if unless is None:
            await self.clock.sleep(slept)
        else:
            await sleep_unless(self.clock, slept, unless)
        return slept


async def sleep_unless(clock: Clock, seconds: float, event: asyncio.Event) -> bool:
    """Sleep ``seconds`` of ``clock``'s time, or until ``event`` is set; True if it was.

    What a periodic loop waits on, so that stopping it (setting ``event``) does not wait
    out the interval, and a test's clock drives the interval."""
    if event.is_set():
        return True
    setter = asyncio.ensure_future(event.wait())
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait((setter, sleeper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (setter, sleeper):
            waiter.cancel()
    return event.is_set()
