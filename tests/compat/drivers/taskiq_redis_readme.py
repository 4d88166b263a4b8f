"""taskiq-redis's README: its broker.py (RedisStreamBroker + RedisAsyncResultBackend) run as
the README says, ``taskiq worker broker:broker`` then ``python3 broker.py``; and its
schedule-source migration recipe with a real ``taskiq scheduler``."""

from __future__ import annotations

import re

from tests.compat.harness import Run

CHECKS = [
    "worker_starts",
    "main_exits_0",
    "main_prints_successful_result",
    "worker_runs_task",
    "old_source_add_schedule",
    "scheduler_starts_with_migration",
    "schedules_migrated",
    "old_schedules_deleted",
]
SERVICES = frozenset({"redis"})
LOCKS: tuple[str, ...] = ()
COST = 15


def _usage(run: Run) -> None:
    with run.check("worker_starts"):
        worker = run.serve("worker", ["taskiq", "worker", "broker:broker"])
    if not run.results["worker_starts"].ok:
        for name in ("main_exits_0", "main_prints_successful_result", "worker_runs_task"):
            run.fail(name, "not reached: the worker did not start")
        return
    output = ""
    with run.check("main_exits_0"):
        done = run.run("main", ["python", "broker.py"], timeout=60)
        output = done.stdout
        assert done.returncode == 0, f"exit {done.returncode}:\n{output[-3000:]}"
    with run.check("main_prints_successful_result"):
        # what taskiq prints for print(await task.wait_result()): the TaskiqResult
        assert "is_err=False" in output and "return_value=None" in output, output[-3000:]
    with run.check("worker_runs_task"):
        worker.wait_for("All problems are solved!", timeout=30)
    worker.stop()


def _migration(run: Run) -> None:
    old = run.probe("probe_migration.py", ["old_source_add_schedule"], "old")
    match = re.search(r"^SCHEDULE-ID (\S+)$", old.stdout, re.MULTILINE)
    with run.check("scheduler_starts_with_migration"):
        run.serve("scheduler", ["taskiq", "scheduler", "migration.broker:scheduler"])
    if match is None or not run.results["scheduler_starts_with_migration"].ok:
        for name in ("schedules_migrated", "old_schedules_deleted"):
            run.fail(name, "not reached: no old schedule, or the scheduler did not start")
        return
    run.probe(
        "probe_migration.py", ["schedules_migrated", "old_schedules_deleted"], "check", match[1]
    )


def drive(run: Run) -> None:
    _usage(run)
    _migration(run)
