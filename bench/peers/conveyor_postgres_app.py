"""Runs in bench/.venvs/conveyor-postgres. Worker:
`conveyor worker peers.conveyor_postgres_app:app`."""

from __future__ import annotations

from benchkit.config import CONFIG

from peers.conveyor_app import make

app, bench_task, App = make(f"{CONFIG.pg_dsn}?prefix=bench")
