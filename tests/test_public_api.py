"""The public API is one file: __all__ is sorted, complete, and every name resolves."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

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
    lazy = set(conveyor._LAZY)  # loaded on first use (module __getattr__)
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
    # nor, without a task that has a schedule, for cron parsing and time zones
    assert {m for m in loaded if m.startswith("conveyor.scheduler")} == set()
    assert "conveyor.brokers.redis" not in loaded and "conveyor.brokers.sqlite" not in loaded
    assert conveyor.Scheduler.__name__ == "Scheduler"  # still there, when asked for


def test_conveyor_worker_loads_only_what_a_worker_runs(tmp_path: Path) -> None:
    """What ``conveyor worker`` imports before it forks is on the path of every start-up
    (bench/startup.py): not the other commands, nor scheduling, nor the reading of package
    data through importlib.resources (zipfile, tempfile), for a task without a schedule on
    the embedded SQLite broker."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, click\n"
        "from conveyor.cli import main, import_app\n"
        "main.get_command(click.Context(main), 'worker')\n"
        "import conveyor.worker.consumer\n"
        "import tests.integration.startup_app\n"
        "print(' '.join(sys.modules))\n"
    )
    env = {**os.environ, "CONVEYOR_BROKER_URL": f"sqlite:///{tmp_path}/x.db"}
    root = Path(__file__).resolve().parents[1]
    output = subprocess.check_output([sys.executable, "-c", code], text=True, env=env, cwd=root)
    loaded = set(output.split())
    assert "conveyor.cli.worker" in loaded and "conveyor.brokers.sqlite.broker" in loaded
    commands = {m for m in loaded if m.startswith("conveyor.cli.")} - {"conveyor.cli.worker"}
    assert commands == set()
    assert {m for m in loaded if m.startswith("conveyor.scheduler")} == set()
    heavy = {"importlib.resources", "zipfile", "sysconfig", "zoneinfo", "cronsim", "rich"}
    assert heavy & loaded == set()


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
