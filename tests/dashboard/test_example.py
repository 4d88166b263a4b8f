"""examples/dashboard.py runs as documented: a FastAPI app with the dashboard mounted,
work flowing, an abort through the dashboard's form, a refused anonymous action; from an
empty directory, leaving nothing behind (as tests/docs/test_examples.py checks the others)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.dashboard.live import ROOT
from tests.docs.programs import Program, run

pytestmark = pytest.mark.slow


def test_the_dashboard_example_runs(tmp_path: Path) -> None:
    example = ROOT / "examples" / "dashboard.py"
    done = run(Program("dashboard.py", (sys.executable, str(example))), tmp_path)
    assert done.returncode == 0, done.report()
    assert not done.left_behind, done.left_behind
    assert "after the Abort button: aborted" in done.stdout
    assert "the same action without a login: 401" in done.stdout
    assert "tasks matching send_email: 5" in done.stdout
