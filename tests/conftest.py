"""Shared fixtures: an app on the memory broker with compressed timeouts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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


@asynccontextmanager
async def connected_app(
    scheme: str, tmp_path: Path, **overrides: object
) -> AsyncIterator[Conveyor]:
    """A connected :func:`fast_app` on ``scheme``'s broker; its keys are removed after."""
    from tests.brokers.conftest import _cleanup, _url_for, service_unavailable

    url = _url_for(scheme, tmp_path)
    conveyor = fast_app(url, **overrides)
    try:
        await conveyor.connect()
    except BrokerUnavailable as exc:
        service_unavailable(str(exc))
    try:
        yield conveyor
    finally:
        await conveyor.close()
        await _cleanup(url)


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Conveyor]:
    """The same behaviour tests run on every broker."""
    async with connected_app(request.param, tmp_path) as conveyor:
        yield conveyor
