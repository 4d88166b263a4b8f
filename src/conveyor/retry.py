"""Backoff policies: how long a failed task waits before its next attempt.

>>> exponential(base=1.0, cap=300.0)(attempt=3)  # doctest: +SKIP
2.71...  # uniform in [0, min(cap, base * 2**(attempt-1))] with full jitter
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "Backoff",
    "Exponential",
    "Fixed",
    "NoDelay",
    "exponential",
    "fixed",
    "none",
    "process_rng",
]

process_rng = random.Random()
"""The generator of every policy that is not given its own ``rng``. A worker that
``conveyor worker`` forks from its supervisor would otherwise inherit the supervisor's
generator state (the policies are built when the app is imported), and every worker
would draw the same "random" delays: no jitter across workers at all. So it is
re-seeded in every forked child, as the stdlib re-seeds only the ``random`` module's
own generator."""
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=process_rng.seed)


class Backoff(Protocol):
    """Maps the number of the attempt that just failed (1-based) to a delay in seconds."""

    def __call__(self, attempt: int) -> float: ...


@dataclass(frozen=True, slots=True)
class Exponential:
    """``base * 2**(attempt-1)`` capped at ``cap``; with ``jitter``, uniform in [0, that]
    ("full jitter"), which spreads a thundering herd of retries."""

    base: float = 1.0
    cap: float = 300.0
    jitter: bool = True
    rng: random.Random = field(default=process_rng, compare=False, repr=False)

    def __call__(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** max(attempt - 1, 0))
        return self.rng.uniform(0.0, ceiling) if self.jitter else ceiling


@dataclass(frozen=True, slots=True)
class Fixed:
    """The same delay before every retry."""

    delay: float

    def __call__(self, attempt: int) -> float:
        return self.delay


@dataclass(frozen=True, slots=True)
class NoDelay:
    """Retry at once."""

    def __call__(self, attempt: int) -> float:
        return 0.0


def exponential(
    base: float = 1.0, cap: float = 300.0, jitter: bool = True, rng: random.Random | None = None
) -> Exponential:
    """Exponential backoff with full jitter: ``exponential(base=1.0, cap=300.0)``."""
    if base < 0 or cap < 0:
        raise ValueError("exponential(): base and cap must be >= 0 seconds")
    return Exponential(base, cap, jitter, rng or process_rng)


def fixed(delay: float) -> Fixed:
    """Retry after the same ``delay`` seconds every time."""
    if delay < 0:
        raise ValueError("fixed(): delay must be >= 0 seconds")
    return Fixed(delay)


def none() -> NoDelay:
    """Retry immediately."""
    return NoDelay()
