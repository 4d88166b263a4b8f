"""Shared fixtures: an app on the memory broker with compressed timeouts, and the one
way a test waits for a condition it cannot be told about (:func:`eventually`)."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from conveyor import BrokerUnavailable, Conveyor
from conveyor.testing import ManualClock
from tests.topologies import redis_cluster as redis_cluster  # session fixtures
from tests.topologies import redis_sentinel as redis_sentinel

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
CHECKOUT_PATH = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
"""``PYTHONPATH`` for a process that must run this checkout's Conveyor and find the
tests' apps, whatever the environment has installed (a worktree may share its venv with
another checkout)."""


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = 5.0,
    what: str | None = None,
    every: float = 0.005,
    clock: ManualClock | None = None,
    step: float = 0.05,
) -> T:
    """Await ``check()`` (a plain or async callable) until it returns something truthy, and
    return that; fail naming ``what`` after ``timeout`` seconds. It returns as soon as the
    condition holds: the timeout is a deadline for a broken test, never a wait.

    With ``clock``, each poll first advances it ``step`` seconds: the code under test sees
    time pass (a lease run out, a reaper tick) only while the test waits for the outcome.

    >>> await eventually(lambda: handle.status(), what="a status")    # doctest: +SKIP
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if clock is not None:
            clock.advance(step)
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(_timed_out(timeout, what, check))
        # sleep: the poll interval, for a state no event announces (a broker's counts)
        await asyncio.sleep(every)


def eventually_blocking(
    check: Callable[[], T], *, timeout: float = 10.0, what: str | None = None, every: float = 0.02
) -> T:
    """:func:`eventually` for a thread or a test without an event loop (other processes'
    output, files they write)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(_timed_out(timeout, what, check))
        time.sleep(every)  # sleep: the poll interval, for another process's state


def _timed_out(timeout: float, what: str | None, check: Callable[..., object]) -> str:
    name = getattr(check, "__name__", repr(check))
    return f"timed out after {timeout} s waiting for {what or name}"


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


@pytest.fixture
def clock() -> ManualClock:
    """A :class:`ManualClock` that starts at the real time: Redis compares the due times
    an app computes from its clock with its own."""
    return ManualClock(now=time.time())


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def clocked_app(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[Conveyor]:
    """:func:`app` on ``clock``: the worker's loops, and the leases and delays of the
    memory and SQLite brokers, move only when the test advances it (Redis keeps leases and
    due times by its server's clock)."""
    async with connected_app(request.param, tmp_path, clock=clock) as conveyor:
        yield conveyor


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Conveyor]:
    """The same behaviour tests run on every broker."""
    async with connected_app(request.param, tmp_path) as conveyor:
        yield conveyor


async def nothing_pending(app: Conveyor) -> bool:
    """Nothing ready, delayed or running on any queue (dead letters aside): no retry is
    waiting, nothing is left to run."""
    return all(
        (depth.ready, depth.delayed, depth.running) == (0, 0, 0)
        for depth in await app.broker.queue_depths()
    )


async def fetch_is_waiting(broker: object) -> bool:
    """True while a fetch on ``broker`` is blocked waiting for work: registered for a
    wake-up (memory, SQLite), or blocked in ``XREADGROUP`` on the server (Redis). What a
    test waits for before checking that something ends that wait."""
    from conveyor.brokers.memory import MemoryBroker
    from conveyor.brokers.sqlite.broker import SqliteBroker

    if isinstance(broker, MemoryBroker):
        return bool(broker._waiters)
    if isinstance(broker, SqliteBroker):
        return bool(broker._waiting)
    from conveyor.brokers.redis.broker import RedisBroker
    from conveyor.brokers.redis.connection import blocked_client_id

    assert isinstance(broker, RedisBroker), broker
    client_id = None if broker._blocking is None else blocked_client_id(broker._blocking)
    if client_id is None:
        return False
    (client,) = await broker.client.client_list(client_id=[client_id])
    return "b" in client["flags"] and client["cmd"] == "xreadgroup"
