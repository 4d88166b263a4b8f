"""Runs in bench/.venvs/conveyor-events. Worker:
`conveyor worker peers.conveyor_events_app:app`."""

from __future__ import annotations

from benchkit.config import CONFIG

from peers.conveyor_app import make

app, bench_task, App = make(f"{CONFIG.redis_url}?prefix=bench", events=True)
