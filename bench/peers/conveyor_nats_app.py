"""Runs in bench/.venvs/conveyor-nats. Worker: `conveyor worker peers.conveyor_nats_app:app`."""

from __future__ import annotations

from typing import Any

from benchkit.config import CONFIG
from peers.conveyor_app import make

from conveyor.brokers.nats.testing import delete_namespace

URL = f"{CONFIG.nats_url}?prefix=bench"
RESULTS = f"{CONFIG.redis_url}?prefix=bench"

app, bench_task, _App = make(URL, results=RESULTS)


class App(_App):  # type: ignore[valid-type,misc]
    async def prepare(self) -> dict[str, Any]:
        await delete_namespace(URL)
        return {}
