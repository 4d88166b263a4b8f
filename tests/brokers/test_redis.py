"""Redis only: paths of the Redis broker that the conformance suite cannot reach on purpose."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from conveyor.brokers.base import Delivery, Outgoing, StoredResult, WorkflowRecord
from conveyor.brokers.redis import RedisBroker
from conveyor.errors import BrokerUnavailable
from conveyor.result import AbortOutcome
from conveyor.testing.conformance import conformance_options
from tests.conftest import eventually, fetch_is_waiting

from .conftest import REDIS_URL, _cleanup, service_unavailable


@pytest.fixture
async def broker() -> AsyncIterator[RedisBroker]:
    url = f"{REDIS_URL}?prefix=test-{uuid.uuid4().hex[:12]}"
    redis_broker = RedisBroker(url, conformance_options())
    try:
        await redis_broker.connect()
    except BrokerUnavailable as exc:
        service_unavailable(str(exc))
    try:
        yield redis_broker
    finally:
        await redis_broker.close()
        await _cleanup(url)


async def test_abort_between_a_blocking_read_and_its_start_marks_the_delivery(
    broker: RedisBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A blocking XREADGROUP delivers the entry, then start.lua runs in a second call: an
    abort in between finds the entry pending (not queued any more) and marks it, and the
    start reports the mark, so the worker never runs it."""
    outcomes: list[AbortOutcome] = []
    start = broker._start

    async def abort_then_start(reply: list[Any], streams: Any) -> list[Delivery]:
        for _, entries in reply:
            for _, fields in entries:
                task_id = fields[b"i"].decode()
                # the body is read before abort.lua decides, so a result may be built;
                # it must not be stored
                outcomes.append(await broker.abort(task_id, _result_for(task_id)))
        return await start(reply, streams)

    monkeypatch.setattr(broker, "_start", abort_then_start)
    item = Outgoing(task_id=uuid.uuid4().hex, queue="default", body=b"x")
    waiting = asyncio.create_task(broker.fetch(["default"], 1, 5.0))
    # the fetch found nothing and is blocked in XREADGROUP
    await eventually(lambda: fetch_is_waiting(broker), what="the blocking read")
    await broker.publish([item])
    (delivery,) = await asyncio.wait_for(waiting, 5.0)
    assert outcomes == [AbortOutcome.SIGNALLED]
    assert (delivery.task_id, delivery.abort_requested) == (item.task_id, True)
    assert await broker.abort_marks([delivery]) == [True]
    assert await broker.result_store().get(item.task_id) is None


async def test_a_task_of_an_aborted_workflow_starts_with_the_abort_mark(
    broker: RedisBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """abort_workflow.lua ends the workflow; the abort.lua calls for its tasks come one
    by one after it. A worker that fetches one of them in between (fetch.lua, or a
    blocking read then start.lua) gets it with the abort mark, so it never runs: the
    workflow's queued tasks never start once its abort began (a worker freed by the
    abort's first cancellations used to start the next members)."""
    record = WorkflowRecord(uuid.uuid4().hex, "running", time.time(), ttl=60.0, info=b"i")
    await broker.open_workflow(record)
    member = Outgoing(uuid.uuid4().hex, "default", b"m", workflow=record.workflow_id)
    plain = Outgoing(uuid.uuid4().hex, "default", b"p")
    await broker.publish([member, plain])
    _, held = await broker.abort_workflow(record.workflow_id)
    assert held == [member.task_id]
    fetched = {d.task_id: d for d in await broker.fetch(["default"], 10, 0.1)}
    assert fetched[member.task_id].abort_requested is True  # fetch.lua
    assert fetched[plain.task_id].abort_requested is False
    assert await broker.abort_marks([fetched[member.task_id]]) == [True]

    # the blocking path: XREADGROUP delivers the entry, start.lua starts it
    waiting = asyncio.create_task(broker.fetch(["default"], 1, 5.0))
    await eventually(lambda: fetch_is_waiting(broker), what="the blocking read")
    other = WorkflowRecord(uuid.uuid4().hex, "running", time.time(), ttl=60.0, info=b"i")
    await broker.open_workflow(other)
    start = broker._start

    async def abort_then_start(reply: list[Any], streams: Any) -> list[Delivery]:
        await broker.abort_workflow(other.workflow_id)
        return await start(reply, streams)

    monkeypatch.setattr(broker, "_start", abort_then_start)
    late = Outgoing(uuid.uuid4().hex, "default", b"m", workflow=other.workflow_id)
    await broker.publish([late])
    (delivery,) = await asyncio.wait_for(waiting, 5.0)
    assert (delivery.task_id, delivery.abort_requested) == (late.task_id, True)


def _result_for(task_id: str) -> Any:
    def build(body: bytes, attempts: int) -> StoredResult:
        return StoredResult(task_id, b"must not be stored", 60.0)

    return build


async def test_a_server_warning_is_logged_once_per_process(
    broker: RedisBroker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from conveyor.brokers.redis import broker as broker_module

    monkeypatch.setattr(broker_module, "_WARNED", set())
    if await broker.client.config_get("appendonly") != {"appendonly": "no"} and (
        await broker.client.config_get("appendonly") != {b"appendonly": b"no"}
    ):
        pytest.skip("this Redis keeps data on disk: it has nothing to warn about")
    with caplog.at_level(logging.WARNING, "conveyor.redis"):
        for _ in range(3):  # the app's, the sync portal's, another loop's connection
            other = broker.clone()
            await other.connect()
            await other.close()
    warnings = [r for r in caplog.records if "persistence off" in r.getMessage()]
    assert len(warnings) == 1
