"""Every broker lets a real worker keep its promises (conveyor.testing.behaviour): retries,
aborts, lease renewal, zombie fencing, poison isolation, crash counting, graceful stop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from conveyor import BrokerUnavailable, Conveyor
from conveyor.brokers import broker_class_for
from conveyor.testing.behaviour import (
    BEHAVIOUR_CHECKS,
    BEHAVIOUR_REQUIRES,
    AppFactory,
    BehaviourCheck,
)

from .conftest import _cleanup, service_unavailable, with_results


@pytest.fixture
def app_factory(broker_url: str) -> AppFactory:
    url = broker_url

    @asynccontextmanager
    async def open_app(**settings: Any) -> AsyncIterator[Conveyor]:
        app = Conveyor(with_results(url), environ={}, **settings)
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
async def test_behaviour(check: BehaviourCheck, broker_url: str, app_factory: AppFactory) -> None:
    missing = BEHAVIOUR_REQUIRES[check] - broker_class_for(broker_url).capabilities
    if missing:
        pytest.skip(f"{broker_url.split(':')[0]}:// does not declare {sorted(missing)}")
    await check(app_factory)
