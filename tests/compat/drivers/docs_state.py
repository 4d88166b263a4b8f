"""taskiq's dependency-injection examples (docs/examples/state), each sent as a task."""

from __future__ import annotations

from tests.compat.harness import Run

_BASES = [
    "async_generator_deps",
    "generator_deps",
    "class_dependency",
    "generics",
    "dependencies_tree",
    "no_cache",
]
CHECKS = [name for base in _BASES for name in (base, base + "_annot")]
SERVICES: frozenset[str] = frozenset()
LOCKS: tuple[str, ...] = ()
COST = 5


def drive(run: Run) -> None:
    run.probe("probe_state.py", CHECKS, timeout=120)
