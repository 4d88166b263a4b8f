"""Broker factories for the conformance suite, one per URL scheme.

Locally a broker whose service is unreachable is skipped with the reason; with
``CI=true`` that skip becomes a failure, so CI never passes on a missing service.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from conveyor.brokers import broker_class_for
from conveyor.brokers.base import Broker
from conveyor.settings import Settings

Factory = Callable[[Settings], AbstractAsyncContextManager[Broker]]


def _url_for(scheme: str, tmp_path: Path) -> str:
    if scheme == "memory":
        return "memory://"
    if scheme == "sqlite":
        return f"sqlite:///{tmp_path / 'conformance.db'}"
    raise AssertionError(scheme)


def service_unavailable(reason: str) -> None:
    """Skip locally; fail in CI, where every service must be up."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"service unavailable in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(params=["memory", "sqlite"])
def broker_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    scheme: str = request.param
    url = _url_for(scheme, tmp_path)

    @asynccontextmanager
    async def open_broker(settings: Settings) -> AsyncIterator[Broker]:
        try:
            cls = broker_class_for(url)
        except Exception as exc:  # the backend is not built yet or its extra is missing
            service_unavailable(f"{scheme} broker unavailable: {exc}")
        broker: Broker = cls(url, settings.replace(broker_url=url))
        await broker.connect()
        try:
            yield broker
        finally:
            await broker.close()

    return open_broker
