"""Configuration, read from the environment once, when the API or a worker imports it.

==========================  =============================================================
``CONVEYOR_BROKER_URL``     the queue (Conveyor's own variable, so ``conveyor`` commands
                            agree): unset, the embedded SQLite file ``conveyor.db`` next
                            to the app; ``redis://host:6379/0`` for Redis
``DATABASE_URL``            the app's database, an async SQLAlchemy URL: unset, the
                            SQLite file ``app.db`` next to the app (through aiosqlite)
``RETENTION_DAYS``          how long sent emails and finished reports are kept (30)
==========================  =============================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # examples/fastapi_app/


@dataclass(frozen=True, slots=True)
class Settings:
    broker_url: str
    database_url: str
    retention: timedelta

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            # an absolute path gives four slashes: sqlite:////srv/app/conveyor.db
            broker_url=environ.get("CONVEYOR_BROKER_URL") or f"sqlite:///{HERE / 'conveyor.db'}",
            database_url=environ.get("DATABASE_URL") or f"sqlite+aiosqlite:///{HERE / 'app.db'}",
            retention=timedelta(days=float(environ.get("RETENTION_DAYS", "30"))),
        )


settings = Settings.from_environ()
