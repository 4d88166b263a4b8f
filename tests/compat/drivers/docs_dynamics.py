"""taskiq's dynamic-broker examples: scripts that register a lambda as a task at run time,
send it, and run a worker (``taskiq.api.run_receiver_task``) and a scheduler
(``run_scheduler_task``) inside the script, on Redis."""

from __future__ import annotations

from tests.compat.harness import Run

CHECKS = [
    "dyn_broker_exits_0",
    "dyn_receiver_exits_0",
    "dyn_receiver_runs_the_task",
    "dyn_receiver_stops_the_worker",
    "dyn_scheduler_exits_0",
    "dyn_scheduler_runs_the_sent_task",
    "dyn_scheduler_runs_the_scheduled_task",
    "dyn_scheduler_stops_the_scheduler",
]
SERVICES = frozenset({"redis"})
LOCKS: tuple[str, ...] = ()
COST = 20


def _script(run: Run, name: str, expected: dict[str, str]) -> None:
    run.reset_redis()  # what an earlier script left queued is not this one's
    output = ""
    with run.check(f"{name}_exits_0"):
        done = run.run(name, ["python", f"{name}.py"], timeout=90)
        output = done.stdout
        assert done.returncode == 0, f"exit {done.returncode}:\n{output[-3000:]}"
    for check, text in expected.items():
        with run.check(check):
            assert text in output.splitlines(), f"{text!r} not printed; output:\n{output[-3000:]}"


def drive(run: Run) -> None:
    # one after the other: they use the same queue (the "taskiq" list of db 0)
    _script(run, "dyn_broker", {})
    _script(
        run,
        "dyn_receiver",
        {
            "dyn_receiver_runs_the_task": "A 1",
            "dyn_receiver_stops_the_worker": "Worker successfully exited.",
        },
    )
    _script(
        run,
        "dyn_scheduler",
        {
            "dyn_scheduler_runs_the_sent_task": "A 1",
            "dyn_scheduler_runs_the_scheduled_task": "A 22",
            "dyn_scheduler_stops_the_scheduler": "Scheduler successfully exited.",
        },
    )
