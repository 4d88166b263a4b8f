"""Every broker passes the same conformance suite (conveyor.testing.conformance)."""

from __future__ import annotations

import pytest

from conveyor.testing.conformance import CHECKS, Check

from .conftest import Factory


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_conformance(check: Check, broker_factory: Factory) -> None:
    await check(broker_factory)
