"""Every broker passes the same conformance suite (conveyor.testing.conformance)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.brokers import broker_class_for
from conveyor.testing.conformance import CHECKS, REQUIRES, Check

from .conftest import SCHEMES, TOPOLOGY_SCHEMES, Factory, topology_broker_url


@pytest.fixture(params=[*SCHEMES, *TOPOLOGY_SCHEMES])
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every broker, and the Redis broker on a Redis Cluster and behind Sentinel."""
    return topology_broker_url(request, tmp_path)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_conformance(check: Check, broker_url: str, broker_factory: Factory) -> None:
    missing = REQUIRES[check] - broker_class_for(broker_url).capabilities
    if missing:
        pytest.skip(f"{broker_url.split(':')[0]}:// does not declare {sorted(missing)}")
    await check(broker_factory)
