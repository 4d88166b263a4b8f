"""A task module that registers on sched_app's app: `conveyor schedules APP -m <this>`."""

from __future__ import annotations

from tests.integration.sched_app import app


@app.task
async def purge(days: int) -> int:
    return days
