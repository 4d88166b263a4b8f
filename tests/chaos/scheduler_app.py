"""The app scheduler chaos tests run: two tasks on 1-second schedules that write the tick
ledger (G7).

Schedulers (``conveyor scheduler tests.chaos.scheduler_app:app``) and workers import it;
the broker comes from ``CONVEYOR_BROKER_URL``, the tick ledger file from
``CONVEYOR_CHAOS_TICKS`` (default ``ticks.jsonl`` in ``CONVEYOR_CHAOS_LEDGER``).

- ``skip_tick`` runs on ``every(seconds=1)`` with the default ``skip`` policy;
- ``catch_up_tick`` runs on ``every(seconds=1, missed=catch_up(within=...))``, the window
  from ``CONVEYOR_CHAOS_SCHED_CATCH_UP_WITHIN`` (seconds, default 30);
- ``slow_tick`` runs on ``every(seconds=...)`` (``CONVEYOR_CHAOS_SCHED_SLOW_INTERVAL``,
  default 5), an interval longer than the tests' grace, with the ``skip`` policy.

Each run appends one ``tick_run`` record: schedule id, ``ctx.labels["scheduled_for"]``
(and its Unix time, ``fire``), ``ctx.task_id`` and the pid. A hook adds what the
scheduler processes did: ``tick_send`` for every copy of a tick a scheduler prepares
(``before_enqueue``), ``tick_enqueued`` for the copy the broker admitted
(``after_enqueue``; the scheduler calls it only for a fresh task).
"""

from __future__ import annotations

import os
from datetime import datetime

from conveyor import Context, Conveyor, Depends
from conveyor.hooks import Hook
from conveyor.message import Message
from conveyor.scheduler import catch_up, every
from tests.chaos.ledger import tick_ledger

SKIP = "chaos-skip"
CATCH_UP = "chaos-catch-up"
SLOW = "chaos-slow"
CATCH_UP_WITHIN_ENV = "CONVEYOR_CHAOS_SCHED_CATCH_UP_WITHIN"
SLOW_INTERVAL_ENV = "CONVEYOR_CHAOS_SCHED_SLOW_INTERVAL"
CATCH_UP_WITHIN = float(os.environ.get(CATCH_UP_WITHIN_ENV, "30"))
SLOW_INTERVAL = float(os.environ.get(SLOW_INTERVAL_ENV, "5"))

app = Conveyor(os.environ.get("CONVEYOR_BROKER_URL", "memory://"))


def _fire(scheduled_for: str) -> float:
    return datetime.fromisoformat(scheduled_for).timestamp()


def _record_run(ctx: Context) -> None:
    scheduled_for = ctx.labels["scheduled_for"]
    tick_ledger().record(
        "tick_run",
        schedule=ctx.labels["schedule"],
        scheduled_for=scheduled_for,
        fire=_fire(scheduled_for),
        id=ctx.task_id,
        attempt=ctx.attempt,
    )


@app.task(schedule=[every(seconds=1, id=SKIP)])
async def skip_tick(ctx: Context = Depends()) -> None:
    _record_run(ctx)


@app.task(schedule=[every(seconds=1, id=CATCH_UP, missed=catch_up(within=CATCH_UP_WITHIN))])
async def catch_up_tick(ctx: Context = Depends()) -> None:
    _record_run(ctx)


@app.task(schedule=[every(seconds=SLOW_INTERVAL, id=SLOW)])
async def slow_tick(ctx: Context = Depends()) -> None:
    _record_run(ctx)


class TickAudit(Hook):
    """Records each copy of a tick a scheduler sends, and the copy the broker admitted."""

    def _record(self, ev: str, message: Message, task_id: str) -> None:
        scheduled_for = message.labels.get("scheduled_for")
        if scheduled_for is None or scheduled_for == "now":
            return  # not a tick
        tick_ledger().record(
            ev,
            schedule=message.labels["schedule"],
            scheduled_for=scheduled_for,
            fire=_fire(scheduled_for),
            id=task_id,
        )

    async def before_enqueue(self, message: Message) -> Message:
        self._record("tick_send", message, message.task_id)
        return message

    async def after_enqueue(self, message: Message, task_id: str) -> None:
        if task_id == message.task_id:  # an existing task's id: a dedupe, not an admission
            self._record("tick_enqueued", message, task_id)


app.add_hook(TickAudit())
