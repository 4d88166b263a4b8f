"""taskiq-fastapi's README app (test_script.py): a worker resolving ``Request`` in a task,
the API sending the task from an endpoint; ZeroMQBroker, Redis for the values."""

from __future__ import annotations

from tests.compat.harness import Run

CHECKS = [
    "worker_starts",
    "app_starts",
    "post_endpoint_kicks_task",
    "task_runs_with_request_dependency",
]
SERVICES = frozenset({"redis"})
LOCKS = ("zmq-port-5555",)  # the README's broker binds tcp://0.0.0.0:5555
COST = 10
PROBE_CHECKS = ["app_starts", "post_endpoint_kicks_task", "task_runs_with_request_dependency"]


def drive(run: Run) -> None:
    with run.check("worker_starts"):
        run.serve("worker", ["taskiq", "worker", "test_script:broker"])
    if not run.results["worker_starts"].ok:
        run.fill_missing("not reached: the worker did not start")
        return
    run.probe("probe_client.py", PROBE_CHECKS, timeout=90)
