"""`conveyor worker -w 2 --metrics-port`: one /metrics for both processes, whose counts add
up, and JSON log lines that carry the task; real processes on the SQLite broker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor import Conveyor
from tests.conftest import CHECKOUT_PATH, eventually

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _start_worker(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(
            [
                sys.executable, "-m", "conveyor.cli", "worker",
                "tests.integration.metrics_app:app",
                "-w", "2", "-c", "4",
                "--metrics-port", str(port),  # on 127.0.0.1: the default
                "--log-format", "json",
            ],
            env=env,
            cwd=ROOT,
            stderr=log_file,
            start_new_session=True,
        )  # fmt: skip


async def test_two_worker_processes_are_counted_on_one_endpoint(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    env = {
        **os.environ,
        "CONVEYOR_BROKER_URL": url,
        "CONVEYOR_FETCH_WAIT": "0.2",
        "CONVEYOR_HEARTBEAT_INTERVAL": "0.5",
        "CONVEYOR_GRACE": "2",
        "PYTHONPATH": CHECKOUT_PATH,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = _free_port()
    log_path = tmp_path / "worker.log"
    worker = _start_worker(env, port, log_path)
    try:
        client = Conveyor(url, environ={})
        from tests.integration.metrics_app import whoami

        async with client:
            handles = [await client.enqueue(whoami, (n,), {}, None) for n in range(40)]
            pids = {await h.get(timeout=30) for h in handles}
        assert len(pids) == 2, "both worker processes must have run tasks"

        labels = (("queue", "default"), ("status", "succeeded"), ("task", "whoami"))

        async def both_alive() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
            found = await asyncio.to_thread(_scrape, port)
            return found if found.get(("conveyor_workers_alive", ())) == 2 else None

        found = await eventually(both_alive, timeout=15, what="two live workers in a scrape")
        assert found[("conveyor_tasks_total", labels)] == 40
        timing = (("queue", "default"), ("task", "whoami"))
        assert found[("conveyor_task_duration_seconds_count", timing)] == 40
        assert found[("conveyor_enqueue_to_start_seconds_count", timing)] == 40
        assert found[("conveyor_broker_up", ())] == 1
        assert found[("conveyor_workers_alive", ())] == 2
        assert found.get(("conveyor_queue_depth", (("queue", "default"),)), 0) == 0
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert worker.returncode == 0

    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert f"serving metrics on http://127.0.0.1:{port}/metrics" in {x["message"] for x in lines}
    ran = [line for line in lines if line["message"].startswith("running ")]
    assert len(ran) == 40
    assert {line["task"] for line in ran} == {"whoami"}
    assert {line["task_id"] for line in ran} == {h.task_id for h in handles}
    assert {line["process"] for line in ran} == pids
