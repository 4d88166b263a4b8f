"""Backoff policies: how long a failed task waits before its next attempt.

>>> exponential(base=1.0, cap=300.0)(attempt=3)  # doctest: +SKIP
2.71...  # uniform in [0, min(cap, base * 2**(attempt-1))] with full jitter
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Backoff", "Exponential", "Fixed", "NoDelay", "exponential", "fixed", "none"]


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
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

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
    return Exponential(base, cap, jitter, rng or random.Random())


def fixed(delay: float) -> Fixed:
    """Retry after the same ``delay`` seconds every time."""
    if delay < 0:
        raise ValueError("fixed(): delay must be >= 0 seconds")
    return Fixed(delay)


def none() -> NoDelay:
    """Retry immediately."""
    return NoDelay()
