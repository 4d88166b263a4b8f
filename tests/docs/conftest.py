"""``launched``: the programs of every selected test in tests/docs, started together.

Each test case carries its programs as a parameter (a ``Program``, or ``.programs``). The
first test that asks for an outcome starts all of them, a few at a time, in collection
order; a test then waits for its own only. A program that needs Redis (or RabbitMQ) is
not started when it is down: its test skips locally and fails with ``CI=true``, like the broker
tests (``service_unavailable``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.brokers.conftest import AMQP_URL, NATS_URL, REDIS_URL, service_unavailable
from tests.docs.programs import Outcome, Program, run


def _redis_down() -> str | None:
    """Why Redis cannot be used, or None when it answers."""
    try:
        import redis
    except ImportError as exc:
        return f"redis-py is not installed: {exc}"
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"redis at {REDIS_URL}: {exc}"
    finally:
        client.close()
    return None


def _rabbitmq_down() -> str | None:
    """Why RabbitMQ (with Redis, which keeps its task records) cannot be used, or None."""
    import asyncio

    try:
        import aio_pika
    except ImportError as exc:
        return f"aio-pika is not installed: {exc}"

    async def reach() -> None:
        connection = await aio_pika.connect(AMQP_URL, timeout=2)
        await connection.close()

    try:
        asyncio.run(reach())
    except Exception as exc:
        return f"rabbitmq at {AMQP_URL}: {exc!r}"
    return _redis_down()


def _nats_down() -> str | None:
    """Why NATS with JetStream cannot be used, or None when it answers."""
    import asyncio

    from conveyor.brokers.nats.connection import connect, parse_url
    from conveyor.errors import ConveyorError

    async def ping() -> str | None:
        try:
            nc = await connect(NATS_URL, parse_url(NATS_URL), "conveyor-docs-check")
        except ConveyorError as exc:
            return str(exc)
        try:
            await nc.jetstream().account_info()
        except Exception as exc:
            return f"NATS at {NATS_URL} has no JetStream: {exc!r}"
        finally:
            await nc.close()
        return None

    try:
        return asyncio.run(ping())
    except ImportError as exc:
        return f"nats-py is not installed: {exc}"


def programs_of(value: object) -> tuple[Program, ...]:
    """A test parameter's programs: itself, or its ``.programs``."""
    if isinstance(value, Program):
        return (value,)
    programs = getattr(value, "programs", ())
    return tuple(p for p in programs if isinstance(p, Program))


class Launcher:
    def __init__(self, workdir: Path, workers: int) -> None:
        self._workdir = workdir
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="docs-run")
        self._started: dict[str, Future[Outcome]] = {}
        self._unavailable: dict[str, str | None] = {}

    def unavailable(self, service: str | None) -> str | None:
        if service is None:
            return None
        if service not in self._unavailable:
            checks = {
                "redis": _redis_down,
                "rabbitmq": _rabbitmq_down,
                "postgres": _postgres_down,
                "nats": _nats_down,
            }
            if service not in checks:
                raise AssertionError(f"unknown service {service!r}")
            self._unavailable[service] = checks[service]()
        return self._unavailable[service]

    def start(self, program: Program) -> None:
        if program.id in self._started or self.unavailable(program.needs):
            return
        workdir = self._workdir / f"{len(self._started):03d}"
        self._started[program.id] = self._pool.submit(run, program, workdir)

    def outcome(self, program: Program) -> Outcome:
        """Wait for ``program`` (starting it if it is not yet); skip (or, in CI, fail)
        when the service it needs is down."""
        reason = self.unavailable(program.needs)
        if reason:
            service_unavailable(reason)
        self.start(program)
        return self._started[program.id].result()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def launched(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Launcher]:
    workers = min(8, 3 * (os.cpu_count() or 1))
    launcher = Launcher(tmp_path_factory.mktemp("programs"), workers)
    here = Path(__file__).parent
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or here not in Path(str(item.path)).parents:
            continue
        for value in callspec.params.values():
            for program in programs_of(value):
                launcher.start(program)
    yield launcher
    launcher.shutdown()


def _postgres_down() -> str | None:
    """Why the PostgreSQL the examples use cannot be reached, or None when it can."""
    import asyncio

    import asyncpg

    from tests.brokers.conftest import POSTGRES_URL

    async def probe() -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return f"PostgreSQL at {POSTGRES_URL}: {exc}"
    return None
