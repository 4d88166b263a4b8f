"""Settings for the tests, set before ``app`` is imported (it reads them once): the
in-process broker, a worker that stops within 50 ms, and an in-memory database for the
API's own lifespan (each test gets a database of its own, see test_api.py)."""

from __future__ import annotations

import os

os.environ.update(
    CONVEYOR_BROKER_URL="memory://",
    CONVEYOR_FETCH_WAIT="0.05",
    DATABASE_URL="sqlite+aiosqlite://",
)
