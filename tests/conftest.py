"""Shared fixtures: an app on the memory broker with compressed timeouts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from conveyor import Conveyor


def fast_app(url: str = "memory://", **overrides: object) -> Conveyor:
    """An app whose timeouts are short enough for fault paths to run in milliseconds."""
    settings: dict[str, object] = {
        "lease": 1.0,
        "reap_interval": 0.05,
        "fetch_wait": 0.05,
        "heartbeat_interval": 0.2,
        "grace": 1.0,
        "environ": {},
    }
    settings.update(overrides)
    return Conveyor(url, **settings)  # type: ignore[arg-type]


@pytest.fixture
async def app() -> AsyncIterator[Conveyor]:
    conveyor = fast_app()
    async with conveyor:
        yield conveyor
