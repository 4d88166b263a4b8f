"""Task rows and per-minute outcomes from events, and the charts drawn from them."""

from __future__ import annotations

from conveyor.dashboard.activity import failure_rate, per_minute, search, summarize
from conveyor.dashboard.charts import failure_rate_chart, throughput_chart
from conveyor.events import (
    SchedulerTick,
    TaskFailure,
    TaskReceived,
    TaskRetried,
    TaskStarted,
    TaskSucceeded,
)

T0 = 1_700_000_000.0  # 22:13:20 UTC


def _common(task_id: str, at: float, attempt: int = 1) -> dict[str, object]:
    return {
        "at": at,
        "task_id": task_id,
        "task": "t",
        "queue": "q",
        "attempt": attempt,
        "worker": "w1",
    }


def test_a_tasks_row_follows_its_last_event() -> None:
    events = [
        SchedulerTick(
            at=T0, scheduler="s", schedule_id="x", fire_time=T0, task_id="a", task="t", fresh=True
        ),
        TaskReceived(**_common("a", T0 + 1), enqueued_at=T0, args="1, 2"),
        TaskStarted(**_common("a", T0 + 2), enqueued_at=T0),
        TaskRetried(
            **_common("a", T0 + 3),
            duration=1.0,
            delay=2.0,
            error_type="E",
            error_message="boom",
        ),
        TaskReceived(**_common("b", T0 + 4), enqueued_at=T0),
        TaskReceived(**_common("a", T0 + 5, 2), enqueued_at=T0, args="1, 2"),
        TaskSucceeded(**_common("b", T0 + 6), duration=0.5),
    ]
    rows = summarize(events)
    assert [r.task_id for r in rows] == ["b", "a"]  # newest activity first
    b, a = rows
    assert (b.status, b.duration) == ("succeeded", 0.5)
    assert (a.status, a.attempt, a.args, a.error) == ("running", 2, "1, 2", "")
    assert a.first_seen == T0
    assert search(rows, status="running") == [a]
    assert search(rows, text="B") == [b] and search(rows, text="1, 2") == [a]
    only_tick = summarize(events[:1])
    assert only_tick[0].status == "queued"


def test_outcomes_are_counted_per_minute_and_drawn() -> None:
    now = T0 - T0 % 60 + 30  # half a minute into the current minute
    events = [
        TaskSucceeded(**_common("a", now - 5), duration=0.1),
        TaskSucceeded(**_common("b", now - 5), duration=0.1),
        TaskFailure(
            **_common("c", now - 5),
            duration=0.1,
            error_type="E",
            error_message="x",
        ),
        TaskRetried(
            **_common("d", now - 65),
            duration=0.1,
            delay=1,
            error_type="E",
            error_message="x",
        ),
        TaskSucceeded(**_common("old", now - 3600), duration=0.1),
    ]
    minutes = per_minute(events, now, minutes=30)
    assert len(minutes) == 30 and minutes[-1].start == now - 30
    assert (minutes[-1].succeeded, minutes[-1].failed) == (2, 1)
    assert minutes[-2].retried == 1 and failure_rate(minutes[-2]) is None
    assert failure_rate(minutes[-1]) == 1 / 3
    assert sum(m.total for m in minutes) == 4  # the hour-old one is outside the window

    bars = throughput_chart(minutes)
    assert {b.kind for b in bars.bars} == {"succeeded", "failed", "retried"}
    assert all(0 <= b.y <= bars.height and b.height > 0 for b in bars.bars)
    assert bars.y_ticks[-1][1] == "5"  # 3 rounded up to a nice 5
    rate = failure_rate_chart(minutes)
    assert len(rate.points) == 1 and "33% of 3 failed" in rate.points[0][2]
    assert failure_rate_chart(per_minute([], now)).empty
