"""Shared fixtures: an app on the memory broker with compressed timeouts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conveyor import BrokerUnavailable, Conveyor


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


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Conveyor]:
    """The same behaviour tests run on every broker."""
    from tests.brokers.conftest import _cleanup, _url_for, service_unavailable

    url = _url_for(request.param, tmp_path)
    conveyor = fast_app(url)
    try:
        await conveyor.connect()
    except BrokerUnavailable as exc:
        service_unavailable(str(exc))
    try:
        yield conveyor
    finally:
        await conveyor.close()
        await _cleanup(url)
