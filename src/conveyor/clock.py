"""The clock every timer in the core reads, so tests can drive time themselves."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """Wall time for timestamps and deadlines shared between processes."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    """The real clock: :func:`time.time`."""

    def now(self) -> float:
        return time.time()
