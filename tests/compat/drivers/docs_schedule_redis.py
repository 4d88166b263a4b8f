"""taskiq's Redis scheduling example: ListQueueBroker + ListRedisScheduleSource, with real
``taskiq worker`` and ``taskiq scheduler`` processes; a probe sends a task and adds,
lists and cancels dynamic schedules the way the scheduling guide shows."""

from __future__ import annotations

import re

from tests.compat.harness import Run

CHECKS = [
    "worker_starts",
    "direct_kiq_sent",
    "direct_kiq_runs",
    "schedule_by_time_created",
    "schedule_listed",
    "unschedule_removes",
    "scheduler_starts",
    "schedule_by_time_fires",
    "fired_one_off_schedule_is_gone",
]
SERVICES = frozenset({"redis"})
LOCKS: tuple[str, ...] = ()
COST = 15
PROBE_CHECKS = [
    "direct_kiq_sent",
    "schedule_by_time_created",
    "schedule_listed",
    "unschedule_removes",
]


def drive(run: Run) -> None:
    with run.check("worker_starts"):
        worker = run.serve("worker", ["taskiq", "worker", "redis_schedule:broker"])
    if not run.results["worker_starts"].ok:
        run.fill_missing("not reached: the worker did not start")
        return
    sent = run.probe("probe_schedule.py", PROBE_CHECKS, "send", timeout=60)
    with run.check("direct_kiq_runs"):
        assert run.results["direct_kiq_sent"].ok, "not reached: the task was not sent"
        worker.wait_for("Hello from my_task! 1 direct", timeout=30)
    with run.check("scheduler_starts"):
        run.serve("scheduler", ["taskiq", "scheduler", "redis_schedule:scheduler"])
    match = re.search(r"^SCHEDULE-ID (\S+)$", sent.stdout, re.MULTILINE)
    with run.check("schedule_by_time_fires"):
        assert match, "not reached: no schedule was created"
        assert run.results["scheduler_starts"].ok, "not reached: the scheduler did not start"
        worker.wait_for("Hello from my_task! 2 by_time", timeout=30)
    if match and run.results["schedule_by_time_fires"].ok:
        run.probe("probe_schedule.py", ["fired_one_off_schedule_is_gone"], "after", match[1])
    else:
        run.fail("fired_one_off_schedule_is_gone", "not reached: the schedule did not fire")
