"""A pytest plugin: the broker suites as test items for your broker, and a clock fixture.

It is not loaded automatically (an installed package must not change every pytest run of
its users): load it with ``pytest -p conveyor.testing.plugin``, or with
``pytest_plugins = ["conveyor.testing.plugin"]`` in the ``conftest.py`` at your rootdir.

To prove a broker, provide one fixture, ``conveyor_broker_url``: the URL of a fresh, empty
broker for each test, its scheme registered with :func:`~conveyor.brokers.register_broker`
(yield it to clean up after). Then import the two suites into a test module::

    # test_my_broker.py
    import pytest

    import mypkg.broker  # registers mybroker://
    from conveyor.testing.plugin import test_behaviour, test_conformance  # noqa: F401

    @pytest.fixture
    def conveyor_broker_url(tmp_path) -> str:
        return f"mybroker://{tmp_path}"

Each check of ``conveyor.testing.conformance`` and ``conveyor.testing.behaviour`` becomes
one test item (``test_conformance[publish_fetch_ack]``, ``test_behaviour[...]``). A check
that needs a capability the broker class does not declare is skipped, saying which:
the report shows what the broker can and cannot do. Parametrize ``conveyor_broker_url``
to prove several brokers at once. The items are plain functions that run each check in
``asyncio.run``, so no async plugin is needed (pytest-asyncio, anyio) and any is fine.

Fixtures: ``conveyor_broker_url`` (yours), ``conveyor_capabilities`` (what the broker
class declares; override it to run fewer), ``conveyor_broker_factory`` and
``conveyor_app_factory`` (the factories the checks take, built from the URL), and
``manual_clock``, a :class:`~conveyor.testing.ManualClock` at the current time for any
test.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

import pytest

# A failed check shows the values its assert compared, as a test's own assert does. That
# takes pytest's rewriting, which only a module not imported yet can get.
for _suite in ("conveyor.testing.conformance", "conveyor.testing.behaviour"):
    if _suite not in sys.modules:
        pytest.register_assert_rewrite(_suite)

from conveyor.brokers import broker_class_for  # noqa: E402
from conveyor.brokers.base import Capability  # noqa: E402
from conveyor.testing.behaviour import (  # noqa: E402
    BEHAVIOUR_CHECKS,
    BEHAVIOUR_REQUIRES,
    AppFactory,
    BehaviourCheck,
    app_factory,
)
from conveyor.testing.clock import ManualClock  # noqa: E402
from conveyor.testing.conformance import (  # noqa: E402
    CHECKS,
    REQUIRES,
    BrokerFactory,
    Check,
    broker_factory,
)

__all__ = [
    "CHECK_TIMEOUT",
    "conveyor_app_factory",
    "conveyor_broker_factory",
    "conveyor_capabilities",
    "manual_clock",
    "test_behaviour",
    "test_conformance",
]

CHECK_TIMEOUT = 60.0
"""Seconds a check may take before it fails as hung (the slowest takes about 3 s)."""


@pytest.fixture
def conveyor_capabilities(conveyor_broker_url: str) -> frozenset[Capability]:
    """What the broker class at ``conveyor_broker_url`` declares: the checks of these
    capabilities run, the others are skipped."""
    return frozenset(broker_class_for(conveyor_broker_url).capabilities)


@pytest.fixture
def conveyor_broker_factory(conveyor_broker_url: str) -> BrokerFactory:
    """Opens the broker at ``conveyor_broker_url``, connected, for the conformance checks."""
    return broker_factory(conveyor_broker_url)


@pytest.fixture
def conveyor_app_factory(conveyor_broker_url: str) -> AppFactory:
    """Opens an app on the broker at ``conveyor_broker_url``, for the behaviour checks."""
    return app_factory(conveyor_broker_url)


@pytest.fixture
def manual_clock() -> ManualClock:
    """A :class:`~conveyor.testing.ManualClock` that starts at the real current time (a
    server broker compares due times computed from it with its own clock). Pass it as
    ``Conveyor(url, clock=manual_clock)`` and move time with ``manual_clock.advance(s)``."""
    return ManualClock(now=time.time())


def _id(check: Callable[..., object]) -> str:
    return check.__name__.removeprefix("check_")


def _run(
    check: Callable[..., Awaitable[None]],
    needs: frozenset[Capability],
    capabilities: Iterable[Capability],
    url: str,
    factory: object,
) -> None:
    missing = needs - frozenset(capabilities)
    if missing:
        scheme = urlsplit(url).scheme
        pytest.skip(f"{scheme}:// does not declare {', '.join(sorted(missing))}")

    async def run() -> None:
        limit = asyncio.timeout(CHECK_TIMEOUT)
        try:
            async with limit:
                await check(factory)
        except TimeoutError:
            if limit.expired():  # not a timeout the check itself asserts on
                pytest.fail(f"{check.__name__} did not end within {CHECK_TIMEOUT:g} s")
            raise

    asyncio.run(run())


@pytest.mark.parametrize("check", CHECKS, ids=_id)
def test_conformance(
    check: Check,
    conveyor_broker_url: str,
    conveyor_capabilities: frozenset[Capability],
    conveyor_broker_factory: BrokerFactory,
) -> None:
    """One check of ``conveyor.testing.conformance`` on your broker."""
    _run(
        check, REQUIRES[check], conveyor_capabilities, conveyor_broker_url, conveyor_broker_factory
    )


@pytest.mark.parametrize("check", BEHAVIOUR_CHECKS, ids=_id)
def test_behaviour(
    check: BehaviourCheck,
    conveyor_broker_url: str,
    conveyor_capabilities: frozenset[Capability],
    conveyor_app_factory: AppFactory,
) -> None:
    """One check of ``conveyor.testing.behaviour``: a worker on your broker."""
    _run(
        check,
        BEHAVIOUR_REQUIRES[check],
        conveyor_capabilities,
        conveyor_broker_url,
        conveyor_app_factory,
    )
