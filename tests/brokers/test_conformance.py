"""Every broker passes the same conformance suite (conveyor.testing.conformance)."""

from __future__ import annotations

import pytest

from conveyor.testing.conformance import CHECKS, REQUIRES, Check

from .conftest import Factory, skip_undeclared


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_conformance(
    check: Check, broker_factory: Factory, request: pytest.FixtureRequest
) -> None:
    skip_undeclared(request, "broker_factory", REQUIRES[check])
    await check(broker_factory)
