"""The app `test_metrics_processes.py` runs under `conveyor worker -w 2 --metrics-port`."""

from __future__ import annotations

import asyncio
import logging
import os

from conveyor import Conveyor

app = Conveyor()  # CONVEYOR_BROKER_URL from the test's environment
log = logging.getLogger("tests.metrics_app")


@app.task(name="whoami")
async def whoami(n: int) -> int:
    """Returns the worker's pid; slow enough that both processes get some."""
    log.info("running %d", n)
    await asyncio.sleep(0.05)  # sleep: the task's work, long enough to be shared
    return os.getpid()
