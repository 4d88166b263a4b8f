"""The public API is one file: __all__ is sorted, complete, and every name resolves."""

from __future__ import annotations

import importlib
import pkgutil

import conveyor


def test_all_is_sorted_and_resolves() -> None:
    assert list(conveyor.__all__) == sorted(conveyor.__all__)
    for name in conveyor.__all__:
        assert hasattr(conveyor, name), name


def test_every_public_name_is_exported() -> None:
    public = {
        name
        for name, value in vars(conveyor).items()
        if not name.startswith("_") and not isinstance(value, type(conveyor))
    }
    lazy = {"Scheduler"}  # loaded on first use (module __getattr__)
    assert public - lazy == set(conveyor.__all__) - lazy


def test_import_conveyor_loads_neither_the_worker_nor_the_scheduler_loop() -> None:
    """A process that only enqueues (a FastAPI app) pays for neither; a fresh interpreter
    shows what `import conveyor` loads."""
    import subprocess
    import sys

    code = (
        "import sys, conveyor; print(' '.join(m for m in sys.modules if m.startswith('conveyor')))"
    )
    loaded = set(subprocess.check_output([sys.executable, "-c", code], text=True).split())
    heavy = {m for m in loaded if m.startswith(("conveyor.worker", "conveyor.observability"))}
    assert heavy == set()
    assert "conveyor.scheduler.loop" not in loaded and "conveyor.scheduler.book" not in loaded
    assert "conveyor.brokers.redis" not in loaded and "conveyor.brokers.sqlite" not in loaded
    assert conveyor.Scheduler.__name__ == "Scheduler"  # still there, when asked for


def test_every_public_module_declares_all() -> None:
    missing = []
    for info in pkgutil.walk_packages(conveyor.__path__, "conveyor."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        if not info.ispkg and not hasattr(module, "__all__"):
            missing.append(info.name)
    assert missing == []


def test_readme_names_the_design_entry_points() -> None:
    for name in ("Conveyor", "Context", "Depends", "exponential"):
        assert name in conveyor.__all__
