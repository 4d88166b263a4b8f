"""Every broker lets a real worker keep its promises (conveyor.testing.behaviour): retries,
aborts, lease renewal, zombie fencing, poison isolation, crash counting, graceful stop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from conveyor import BrokerUnavailable, Conveyor
from conveyor.testing.behaviour import BEHAVIOUR_CHECKS, AppFactory, BehaviourCheck

from .conftest import _cleanup, _url_for, service_unavailable


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def app_factory(request: pytest.FixtureRequest, tmp_path: Path) -> AppFactory:
    scheme: str = request.param
    url = _url_for(scheme, tmp_path)

    @asynccontextmanager
    async def open_app(**settings: Any) -> AsyncIterator[Conveyor]:
        app = Conveyor(url, environ={}, **settings)
        try:
            await app.connect()
        except BrokerUnavailable as exc:
            service_unavailable(str(exc))
        try:
            yield app
        finally:
            await app.close()
            await _cleanup(url)

    return open_app


@pytest.mark.parametrize("check", BEHAVIOUR_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_behaviour(check: BehaviourCheck, app_factory: AppFactory) -> None:
    await check(app_factory)
