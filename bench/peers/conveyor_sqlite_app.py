"""Runs in bench/.venvs/conveyor-sqlite. Worker:
`conveyor worker peers.conveyor_sqlite_app:app`."""

from __future__ import annotations

import os

from benchkit.config import CONFIG

from peers.conveyor_app import make

app, bench_task, App = make(
    f"sqlite:///{os.path.join(CONFIG.workdir, 'conveyor.db')}", events=True
)
