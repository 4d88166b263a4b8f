"""The taskiq command-line forms `conveyor worker`/`scheduler` accept: an object holding
its app as ``.conveyor`` (a compat broker or scheduler), and ``-fsd``/``-tp`` discovery."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor import Conveyor
from conveyor.cli import discover_modules, import_app, main


def test_import_app_accepts_an_object_holding_a_conveyor_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "holder_mod.py").write_text(
        "from conveyor import Conveyor\n\n"
        "class Broker:\n    conveyor = Conveyor('memory://', environ={})\n\n"
        "broker = Broker()\nnot_an_app = object()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        app = import_app("holder_mod:broker")
        assert isinstance(app, Conveyor)
        assert app is sys.modules["holder_mod"].Broker.conveyor
        with pytest.raises(Exception, match="is a object, not a Conveyor app"):
            import_app("holder_mod:not_an_app")
    finally:
        sys.modules.pop("holder_mod", None)


def test_fs_discover_finds_task_modules_like_taskiq(tmp_path: Path) -> None:
    for name in ("shop/tasks.py", "shop/billing/tasks.py", "shop/models.py", ".venv/x/tasks.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    assert discover_modules(["tasks.py"], tmp_path) == ["shop.billing.tasks", "shop.tasks"]
    assert discover_modules(["shop/*.py"], tmp_path) == ["shop.models", "shop.tasks"]


def test_tasks_pattern_without_fs_discover_is_refused() -> None:
    result = CliRunner().invoke(main, ["scheduler", "pkg:app", "-tp", "jobs.py"])
    assert result.exit_code != 0
    assert "--tasks-pattern needs --fs-discover" in result.output
