"""Broker factories for the conformance suite, one per URL scheme.

Locally a broker whose service is unreachable is skipped with the reason; with
``CI=true`` that skip becomes a failure, so CI never passes on a missing service.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from conveyor.brokers import broker_class_for
from conveyor.brokers.base import Broker, BrokerOptions
from conveyor.errors import BrokerUnavailable

Factory = Callable[[BrokerOptions], AbstractAsyncContextManager[Broker]]


REDIS_URL = os.environ.get("CONVEYOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("CONVEYOR_TEST_NATS_URL", "nats://127.0.0.1:4222")


def _url_for(scheme: str, tmp_path: Path) -> str:
    if scheme == "memory":
        return "memory://"
    if scheme == "sqlite":
        return f"sqlite:///{tmp_path / 'conformance.db'}"
    if scheme == "redis":
        return f"{REDIS_URL}?prefix=test-{uuid.uuid4().hex[:12]}"
    if scheme == "nats":
        return f"{NATS_URL}?prefix=test-{uuid.uuid4().hex[:12]}"
    raise AssertionError(scheme)


async def _cleanup(url: str) -> None:
    """Delete every key (Redis) or stream and bucket (NATS) a test's prefix created."""
    if url.startswith("nats"):
        await _cleanup_nats(url)
        return
    if not url.startswith("redis"):
        return
    import redis.asyncio as aioredis

    prefix = url.rsplit("prefix=", 1)[1]
    client = aioredis.Redis.from_url(url.split("?", 1)[0])
    try:
        for pattern in (f"{{{prefix}:*", f"{prefix}:*"):
            keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
            if keys:
                await client.delete(*keys)
    finally:
        await client.aclose()


async def _cleanup_nats(url: str) -> None:
    from conveyor.brokers.nats.testing import delete_namespace

    await delete_namespace(url)


def skip_undeclared(request: pytest.FixtureRequest, fixture: str, needs: frozenset[str]) -> None:
    """Skip a check that needs a capability the broker class of this parameter does not
    declare, saying which (as conveyor.testing.plugin does)."""
    scheme: str = request.node.callspec.params[fixture]
    try:
        have = broker_class_for(f"{scheme}://localhost").capabilities
    except Exception:  # its extra is missing: the factory skips with the reason
        return
    missing = sorted(needs - have)
    if missing:
        pytest.skip(f"{scheme}:// does not declare {', '.join(missing)}")


def service_unavailable(reason: str) -> None:
    """Skip locally; fail in CI, where every service must be up."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"service unavailable in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(params=["memory", "sqlite", "redis", "nats"])
def broker_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    scheme: str = request.param
    url = _url_for(scheme, tmp_path)

    @asynccontextmanager
    async def open_broker(options: BrokerOptions) -> AsyncIterator[Broker]:
        try:
            cls = broker_class_for(url)
        except Exception as exc:  # the backend is not built yet or its extra is missing
            service_unavailable(f"{scheme} broker unavailable: {exc}")
        broker: Broker = cls(url, options)
        try:
            await broker.connect()
        except BrokerUnavailable as exc:
            service_unavailable(str(exc))
        try:
            yield broker
        finally:
            await broker.close()
            await _cleanup(url)

    return open_broker
