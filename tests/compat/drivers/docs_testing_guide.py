"""taskiq's testing guide (docs/guide/testing-taskiq.md): its broker module, tasks and
tests, run with pytest the way the guide says (``ENVIRONMENT=pytest``, anyio)."""

from __future__ import annotations

from tests.compat.harness import Run

CHECKS = [
    "test_parse_int::test_task",
    "test_parse_and_add_one::test_add_one",
    "test_wait_all::test_add_one",
    "test_modify_path_direct::test_modify_path",
    "test_modify_path_kiq::test_modify_path",
    "test_modify_path_kiq_annot::test_modify_path",
]
SERVICES: frozenset[str] = frozenset()
LOCKS: tuple[str, ...] = ()
COST = 6


def drive(run: Run) -> None:
    run.pytest("pytest", ["tests"], CHECKS, env={"ENVIRONMENT": "pytest"})
