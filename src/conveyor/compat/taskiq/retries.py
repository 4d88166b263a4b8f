"""taskiq's retry middlewares, read as the retry policy of ``retry_on_error`` tasks.

>>> broker = InMemoryBroker().with_middlewares(                         # doctest: +SKIP
...     SmartRetryMiddleware(default_delay=2, use_delay_exponent=True)
... )

They are middlewares (``set_broker()`` and all) that define none of taskiq's methods:
Conveyor's worker retries, with their settings. Other middlewares run as taskiq runs
them (:mod:`conveyor.compat.taskiq.middlewares`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from conveyor.compat.taskiq._middleware import TaskiqMiddleware
from conveyor.compat.taskiq.schedules import ScheduleSource
from conveyor.retry import Backoff, none, process_rng

__all__ = ["SimpleRetryMiddleware", "SmartRetryMiddleware", "TaskiqMiddleware"]


@dataclass
class SimpleRetryMiddleware(TaskiqMiddleware):
    """Retry policy for tasks declared with ``retry_on_error=True``: at most
    ``max_retries`` (default ``default_retry_count``) runs in total, retried at once.

    Without any retry middleware, ``retry_on_error=True`` uses these defaults (taskiq would
    not retry at all).
    """

    default_retry_count: int = 3
    default_retry_label: bool = False
    no_result_on_retry: bool = True
    types_of_exceptions: Iterable[type[BaseException]] | None = None

    def backoff(self, delay_label: Any) -> Backoff:
        """Retry at once, as taskiq's middleware re-sends at once."""
        return none()


@dataclass
class SmartRetryMiddleware(TaskiqMiddleware):
    """:class:`SimpleRetryMiddleware` with a delay between runs: ``default_delay`` (or the
    task's ``delay`` label) seconds, times the retry number with ``use_delay_exponent``
    (capped at ``max_delay_exponent``), plus up to one second with ``use_jitter``."""

    default_retry_count: int = 3
    default_retry_label: bool = False
    no_result_on_retry: bool = True
    default_delay: float = 5
    use_jitter: bool = False
    use_delay_exponent: bool = False
    max_delay_exponent: float = 60
    schedule_source: ScheduleSource | None = None
    types_of_exceptions: Iterable[type[BaseException]] | None = None

    def backoff(self, delay_label: Any) -> Backoff:
        base = self.default_delay if delay_label is None else float(delay_label)
        return _SmartDelay(base, self.use_delay_exponent, self.max_delay_exponent, self.use_jitter)


@dataclass(frozen=True, slots=True)
class _SmartDelay:
    """SmartRetryMiddleware's delay, as a Conveyor backoff (``attempt`` is the retry number)."""

    delay: float
    exponent: bool
    cap: float
    jitter: bool
    rng: random.Random = field(default=process_rng, compare=False, repr=False)

    def __call__(self, attempt: int) -> float:
        delay = min(self.delay * attempt, self.cap) if self.exponent else self.delay
        return delay + self.rng.random() if self.jitter else delay


_RetryMiddleware = SimpleRetryMiddleware | SmartRetryMiddleware
