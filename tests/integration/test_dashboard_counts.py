"""The dashboard's data by default: a real `conveyor worker` with default settings runs 200
tasks of which 20 fail, and within 5 s of the last one the dashboard's overview and its
/metrics (parsed with prometheus-client's parser) show 180 succeeded and 20 failed, from
the task counters the worker flushes with its heartbeat: no event log, no metrics port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor import Conveyor
from conveyor.dashboard import create_dashboard
from tests.brokers.conftest import REDIS_URL, _cleanup
from tests.conftest import eventually
from tests.integration.counts_app import settle_invoice

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TASKS, FAILING = 200, 20


@pytest.fixture(
    params=["sqlite", pytest.param("redis", marks=pytest.mark.service("redis"))],
)
async def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'counts.db'}"
        return
    url = f"{REDIS_URL}?prefix=test-{uuid.uuid4().hex[:12]}"
    try:
        yield url
    finally:
        await _cleanup(url)


def _start_worker(url: str, log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_BROKER_URL"] = url  # and every other setting at its default
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "conveyor.cli", "worker", "tests.integration.counts_app:app"],
            env=env,
            cwd=ROOT,
            stderr=log_file,
            start_new_session=True,
        )


def _overview_cards(html: str) -> tuple[int, int]:
    """(succeeded, failed or dead) in the overview's cards."""
    found = {
        card: int(number)
        for card, number in re.findall(
            r'<div class="card" id="(succeeded|failed)"><span class="num[^"]*">(\d+)</span>', html
        )
    }
    return found.get("succeeded", -1), found.get("failed", -1)


def _tasks_total(text: str) -> dict[str, float]:
    """conveyor_tasks_total of task settle_invoice by status."""
    return {
        sample.labels["status"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "conveyor_tasks_total" and sample.labels["task"] == "settle_invoice"
    }


async def test_the_dashboard_shows_a_default_workers_outcomes_within_5_s(
    broker_url: str, tmp_path: Path
) -> None:
    log_path = tmp_path / "worker.log"
    worker = _start_worker(broker_url, log_path)
    client = Conveyor(broker_url, environ={})
    try:
        async with client:
            calls = [(settle_invoice, (n,), {}) for n in range(TASKS)]
            handles = await client.enqueue_many(calls)
            results = [await h.wait_result(timeout=60) for h in handles]
            assert sum(r.is_err for r in results) == FAILING, log_path.read_text()[-3000:]
            # the last task has ended: from here the dashboard has 5 s

            web = create_dashboard(client)
            transport = httpx.ASGITransport(app=web)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:

                async def overview_counted() -> tuple[int, int] | None:
                    cards = _overview_cards((await http.get("/")).text)
                    return cards if cards == (TASKS - FAILING, FAILING) else None

                async def metrics_counted() -> dict[str, float] | None:
                    totals = _tasks_total((await http.get("/metrics")).text)
                    wanted = {"succeeded": TASKS - FAILING, "failed": FAILING}
                    return totals if totals == wanted else None

                await eventually(overview_counted, timeout=5, what="180 and 20 on the overview")
                await eventually(metrics_counted, timeout=5, what="180 and 20 on /metrics")
                page = (await http.get("/")).text
                assert re.search(
                    r'<tr data-task="settle_invoice">.*?>180</td>.*?>20</td>', page, re.S
                )
                tasks = (await http.get("/tasks")).text
                assert handles[0].task_id in tasks  # a recent failure, from the dead letters
                assert "CONVEYOR_EVENTS=1" in tasks  # how to turn the event log on
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert worker.returncode == 0, log_path.read_text()[-3000:]
