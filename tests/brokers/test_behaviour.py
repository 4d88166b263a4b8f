"""Every broker lets a real worker keep its promises (conveyor.testing.behaviour): retries,
aborts, lease renewal, zombie fencing, poison isolation, crash counting, graceful stop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from conveyor import BrokerUnavailable, Conveyor
from conveyor.brokers import broker_class_for
from conveyor.testing.behaviour import (
    BEHAVIOUR_CHECKS,
    BEHAVIOUR_REQUIRES,
    AppFactory,
    BehaviourCheck,
    check_crashes_are_counted,
    check_poison_task_is_dead_lettered,
)

from .conftest import (
    SCHEMES,
    TOPOLOGY_SCHEMES,
    _cleanup,
    service_unavailable,
    topology_broker_url,
    with_results,
)


@pytest.fixture(params=[*SCHEMES, *TOPOLOGY_SCHEMES])
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every broker, and the Redis broker on a Redis Cluster and behind Sentinel."""
    return topology_broker_url(request, tmp_path)


# These checks end a lease and wait for reap() to report the message it takes back. On
# JetStream the server takes back an expired lease itself, and no API lists the messages
# waiting for redelivery, so reap() cannot report them (it returns 0); tests/brokers/
# test_nats.py proves crash counting and poison isolation without it.
_NATS_REAP_UNSEEN = {check_crashes_are_counted, check_poison_task_is_dead_lettered}
_NATS_REAP_REASON = "JetStream requeues expired leases itself: reap() has nothing to report"


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
async def test_behaviour(
    check: BehaviourCheck, broker_url: str, app_factory: AppFactory, request: pytest.FixtureRequest
) -> None:
    missing = BEHAVIOUR_REQUIRES[check] - broker_class_for(broker_url).capabilities
    if missing:
        pytest.skip(f"{broker_url.split(':')[0]}:// does not declare {sorted(missing)}")
    if broker_url.startswith("nats") and check in _NATS_REAP_UNSEEN:
        request.applymarker(pytest.mark.xfail(reason=_NATS_REAP_REASON, strict=True))
    await check(app_factory)
