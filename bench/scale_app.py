"""The app of bench/scale.py: a no-op task on each of eight queues, results stored.

Workers: ``conveyor worker scale_app:app -q q0,q1`` with ``bench/`` on ``PYTHONPATH`` and
``CONVEYOR_BROKER_URL`` naming the broker (one Redis, or a Redis Cluster).
"""

from __future__ import annotations

import os
from typing import Any

from conveyor import Conveyor, Task

QUEUES = [f"q{i}" for i in range(8)]

app = Conveyor(
    os.environ.get("CONVEYOR_BROKER_URL", "memory://"),
    result_ttl=300.0,
    fetch_wait=1.0,
)

TASKS: dict[str, Task[Any, int]] = {}
for _queue in QUEUES:

    async def _noop(i: int) -> int:
        return i

    TASKS[_queue] = app.task(name=f"scale_{_queue}", queue=_queue)(_noop)
