"""taskiq's "extending taskiq" examples: custom middleware, result backend, schedule source,
broker and CLI command, each plugged into taskiq by a probe."""

from __future__ import annotations

from tests.compat.harness import Run

CHECKS = [
    *(
        f"{module}_{step}"
        for module in ("middleware_async", "middleware_sync")
        for step in ("startup", "runs_task", "post_save", "shutdown")
    ),
    "result_backend_subclass",
    "result_backend_receives_results",
    "result_backend_serves_wait_result",
    "schedule_source_lists_schedules",
    "custom_broker_subclass",
    "custom_broker_kick_receives_message",
    "custom_cli_command",
]
SERVICES: frozenset[str] = frozenset()
LOCKS: tuple[str, ...] = ()
COST = 12


def drive(run: Run) -> None:
    run.probe("probe_extending.py", CHECKS, timeout=120)
