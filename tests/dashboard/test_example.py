"""examples/dashboard.py runs as documented: a FastAPI app with the dashboard mounted,
work flowing, an abort through the dashboard's form, a refused anonymous action."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.dashboard.live import ROOT

pytestmark = pytest.mark.slow


def test_the_dashboard_example_runs() -> None:
    done = subprocess.run(
        [sys.executable, "examples/dashboard.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "after the Abort button: aborted" in done.stdout
    assert "the same action without a login: 401" in done.stdout
    assert "tasks matching send_email: 5" in done.stdout
