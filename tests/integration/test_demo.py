"""`conveyor demo` runs on the embedded SQLite default and stops cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conveyor import Conveyor
from conveyor.observability.events import EventLog
from tests.conftest import eventually_blocking

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


async def _has_run(url: str) -> bool:
    """The demo (another process) has run a health check and dead-lettered a CRM sync."""
    app = Conveyor(url, events=True, environ={})
    async with app:
        events = [record.event for record in await EventLog.of(app).recent(10_000)]
        dead = await app.broker.dead_letters()
    checked = any(e.kind == "succeeded" and e.task.endswith("health_check") for e in events)
    return checked and any("CRM unreachable" in entry.reason for entry in dead)


def test_demo_shows_progress_dead_letters_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = {**os.environ, "CONVEYOR_DEMO_URL": f"sqlite:///{tmp_path / 'demo.db'}", "COLUMNS": "120"}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor.cli",
            "demo",
            "--rate",
            "10",
            "--dashboard-port",
            str(port),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = env["CONVEYOR_DEMO_URL"]
    # a health check ran (the scheduler fires one every 5 s) and a CRM sync was dead-lettered
    eventually_blocking(lambda: asyncio.run(_has_run(url)), timeout=30, every=0.2)
    page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)  # the demo serves the dashboard
    assert page.status_code == 200 and "succeeded, last 30 min" in page.text
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "succeeded" in output
    assert "Where to look next" in output
    assert f"dashboard: http://127.0.0.1:{port}/" in output
    # docs/demo.md shows what the demo prints: the same columns and the same advice
    documented = (ROOT / "docs" / "demo.md").read_text()
    header = next(line for line in output.splitlines() if line.startswith("┃"))
    assert header in documented, header
    advice = output.split("Where to look next", 1)[1].splitlines()[1:]
    for line in (line.rstrip() for line in advice if line.startswith("  ")):
        assert line in documented, f"docs/demo.md lacks {line!r}"
    final_row = [line for line in output.splitlines() if line.startswith("│")][-1]
    scheduled_runs = int(final_row.strip("│ ").split("│")[-1])
    assert scheduled_runs >= 1, output  # the in-process scheduler's health check ran
    listed = subprocess.run(
        [sys.executable, "-m", "conveyor.cli", "dlq", "conveyor.demo:app", "list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "CRM unreachable" in listed.stdout, listed.stdout + listed.stderr
    assert "failed after 3 attempt(s)" in listed.stdout
