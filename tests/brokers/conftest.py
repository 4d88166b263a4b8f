"""Broker factories for the conformance suite, one per URL scheme.

Locally a broker whose service is unreachable is skipped with the reason; with
``CI=true`` that skip becomes a failure, so CI never passes on a missing service.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from conveyor.brokers import broker_class_for
from conveyor.brokers.base import Broker, BrokerOptions
from conveyor.errors import BrokerUnavailable

Factory = Callable[[BrokerOptions], AbstractAsyncContextManager[Broker]]


REDIS_URL = os.environ.get("CONVEYOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("CONVEYOR_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
# the queues the suites use: deleted after each test, whether or not a record names them
SUITE_QUEUES = ("default", "alpha", "beta", "behaviour-poison")
POSTGRES_URL = os.environ.get(
    "CONVEYOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
NATS_URL = os.environ.get("CONVEYOR_TEST_NATS_URL", "nats://127.0.0.1:4222")


def _url_for(scheme: str, tmp_path: Path, request: pytest.FixtureRequest | None = None) -> str:
    if scheme in TOPOLOGY_SCHEMES:
        assert request is not None, scheme
        # the session's private cluster or sentinel group (tests/topologies.py)
        topology = request.getfixturevalue(TOPOLOGY_SCHEMES[scheme])
        return f"{topology.url}?prefix=test-{uuid.uuid4().hex[:12]}"
    if scheme == "memory":
        return "memory://"
    if scheme == "sqlite":
        return f"sqlite:///{tmp_path / 'conformance.db'}"
    if scheme == "redis":
        return f"{REDIS_URL}?prefix=test-{uuid.uuid4().hex[:12]}"
    if scheme == "amqp":
        return f"{AMQP_URL}?prefix=test-{uuid.uuid4().hex[:12]}"
    if scheme == "postgres":
        return f"{POSTGRES_URL}?prefix=test_{uuid.uuid4().hex[:12]}"
    if scheme == "nats":
        return f"{NATS_URL}?prefix=test-{uuid.uuid4().hex[:12]}"
    raise AssertionError(scheme)


def result_url_for(url: str) -> str | None:
    """The result store a broker's tests give it: amqp:// keeps its task records and
    results in Redis, under the same prefix."""
    if not url.startswith("amqp"):
        return None
    return f"{REDIS_URL}?prefix={url.rsplit('prefix=', 1)[1]}"


def with_results(url: str) -> str:
    """``url`` with its result store in it, where the broker takes one there (amqp's
    ``?results=``): the broker's own store, so results are stored with the settlement."""
    results = result_url_for(url)
    return url if results is None else f"{url}&results={quote(results, safe='')}"


async def _cleanup(url: str) -> None:
    """Delete every key (Redis), every queue and exchange (RabbitMQ), the schema
    (PostgreSQL) or every stream and bucket (NATS) a test's prefix created."""
    if url.startswith("nats"):
        await _cleanup_nats(url)
        return
    if url.startswith("amqp"):
        from conveyor.brokers.rabbitmq import delete_namespace

        with contextlib.suppress(BrokerUnavailable):  # skipped: nothing was created
            await delete_namespace(url, REDIS_URL, SUITE_QUEUES)
        return
    if url.startswith("postgres"):
        await drop_postgres_schema(url)
        return
    if not url.startswith("redis"):
        return
    if url.startswith("redis+"):
        await _cleanup_topology(url)
        return
    import redis.asyncio as aioredis

    prefix = url.rsplit("prefix=", 1)[1]
    client = aioredis.Redis.from_url(url.split("?", 1)[0])
    try:
        for pattern in (f"{{{prefix}:*", f"{{{prefix}}}:*", f"{prefix}:*"):
            keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
            if keys:
                await client.delete(*keys)
    finally:
        await client.aclose()


async def _cleanup_topology(url: str) -> None:
    """Delete a test prefix's keys on a cluster (every master) or a sentinel's master,
    one key at a time: a cluster refuses a DEL across slots."""
    from conveyor.brokers.base import BrokerOptions
    from conveyor.brokers.redis.connection import new_client
    from conveyor.brokers.redis.topology import parse_topology

    topology = parse_topology(url)
    prefix = topology.prefix
    client = new_client(topology, BrokerOptions())
    try:
        for pattern in (f"{{{prefix}:*", f"{{{prefix}}}:*", f"{prefix}:*"):
            keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
            async with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.delete(key)
                await pipe.execute()
    finally:
        await client.aclose()


async def drop_postgres_schema(url: str) -> None:
    """Drop the schema a test's ``?prefix=`` created (nothing when the server is down)."""
    import asyncpg

    base, _, query = url.partition("?")
    schema = query.rsplit("prefix=", 1)[1].split("&", 1)[0]
    try:
        conn = await asyncpg.connect(base, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def _cleanup_nats(url: str) -> None:
    from conveyor.brokers.nats.testing import delete_namespace

    await delete_namespace(url)


def require_module(name: str) -> Any:
    """Import ``name`` (a broker's or integration's library): missing, the test is
    skipped locally and fails in CI, where every extra is installed."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        reason = f"{name} is not installed: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"missing in CI: {reason}", pytrace=False)
        pytest.skip(reason, allow_module_level=True)


def service_unavailable(reason: str) -> None:
    """Skip locally; fail in CI, where every service must be up."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"service unavailable in CI: {reason}")
    pytest.skip(reason)


SCHEMES = ["memory", "sqlite", "redis", "amqp", "postgres", "nats"]
# Redis topologies the suites start themselves (tests/topologies.py): scheme -> the
# session fixture of the topology. Only the conformance and behaviour suites run there
TOPOLOGY_SCHEMES = {"redis+cluster": "redis_cluster", "redis+sentinel": "redis_sentinel"}


@pytest.fixture(params=SCHEMES)
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty broker's URL, one per scheme."""
    return _url_for(request.param, tmp_path)


def topology_broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """:func:`broker_url` for a suite that also runs on the Redis topologies."""
    return _url_for(request.param, tmp_path, request)


@pytest.fixture
def broker_factory(broker_url: str) -> Factory:
    url = broker_url
    scheme = url.split(":", 1)[0]

    @asynccontextmanager
    async def open_broker(options: BrokerOptions) -> AsyncIterator[Broker]:
        try:
            cls = broker_class_for(url)
        except Exception as exc:  # the backend is not built yet or its extra is missing
            service_unavailable(f"{scheme} broker unavailable: {exc}")
        results = result_url_for(url)
        if results is not None:
            options = dataclasses.replace(options, result_url=results)
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
