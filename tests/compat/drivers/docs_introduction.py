"""taskiq's introduction example: an ``InMemoryBroker`` script run with ``python``."""

from __future__ import annotations

from tests.compat.harness import Run

CHECKS = ["script_exits_0", "prints_returned_value"]
SERVICES: frozenset[str] = frozenset()
LOCKS: tuple[str, ...] = ()
COST = 3


def drive(run: Run) -> None:
    output = ""
    with run.check("script_exits_0"):
        done = run.run("inmemory_run", ["python", "inmemory_run.py"], timeout=60)
        output = done.stdout
        assert done.returncode == 0, f"exit {done.returncode}:\n{output}"
    with run.check("prints_returned_value"):
        assert "Returned value: 2" in output, f"output:\n{output}"
