"""``taskiq.kicker`` on Conveyor: ``AsyncKicker``."""

from __future__ import annotations

from conveyor.compat.taskiq.tasks import AsyncKicker as AsyncKicker

__all__ = ["AsyncKicker"]
