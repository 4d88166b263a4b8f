"""Task outcomes counted in the worker, flushed to the broker with its heartbeat.

Counting is on the hot path of every task, so it is one dict increment keyed by
(minute start, task, queue, status): no I/O, no lock (the event loop is the only
writer). The heartbeat takes what was counted since the last flush and hands it to the
broker's :meth:`~conveyor.brokers.base.Counters.record_counts` in one batch; a flush
that fails gives its counts back, to go with the next one. A graceful stop flushes once
more, so nothing counted is lost; a killed worker loses at most the counts of its last
second or so.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["Tally"]

TallyKey = tuple[int, str, str, str]


class Tally:
    """Counts of task outcomes since the last :meth:`take`.

    >>> tally = Tally()
    >>> tally.add("send_email", "default", "succeeded", 120.5)
    >>> tally.take()
    {(120, 'send_email', 'default', 'succeeded'): 1}
    """

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[TallyKey, int] = {}

    def add(self, task: str, queue: str, status: str, at: float) -> None:
        """Count one attempt of ``task`` on ``queue`` that ended as ``status`` at Unix
        time ``at`` (a status of :data:`~conveyor.brokers.base.COUNT_STATUSES`)."""
        key = (int(at) // 60 * 60, task, queue, status)
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1

    def take(self) -> dict[TallyKey, int]:
        """What was counted since the last take; counting starts again from zero."""
        taken, self._counts = self._counts, {}
        return taken

    def give_back(self, counts: Mapping[TallyKey, int]) -> None:
        """Return counts a flush could not store, to be flushed with the next ones."""
        mine = self._counts
        for key, n in counts.items():
            mine[key] = mine.get(key, 0) + n

    def __bool__(self) -> bool:
        return bool(self._counts)
