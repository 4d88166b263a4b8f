"""What the NATS broker does beyond the shared suites: crash counting and poison isolation
with the server's own redelivery (no reaper), loud refusals, redacted URLs."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest

from conveyor import BrokerUnavailable, Conveyor, TaskStatus
from conveyor.brokers.base import (
    Barrier,
    BrokerOptions,
    Follow,
    Join,
    Outgoing,
    Place,
    TaskLocation,
    WorkflowRecord,
)
from conveyor.brokers.nats import NatsBroker
from conveyor.errors import EnqueueError
from conveyor.testing.behaviour import behaviour_settings

from .conftest import NATS_URL, service_unavailable

LEASE = 0.6


def _url(**params: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{NATS_URL}?prefix=test-{uuid.uuid4().hex[:12]}" + (f"&{query}" if query else "")


@pytest.fixture
async def broker() -> AsyncIterator[NatsBroker]:
    url = _url(max_msgs=3)
    broker = NatsBroker(url, BrokerOptions(lease=LEASE, fetch_wait=0.2))
    try:
        await broker.connect()
    except BrokerUnavailable as exc:
        service_unavailable(str(exc))
    try:
        yield broker
    finally:
        await broker.close()
        from conveyor.brokers.nats.testing import delete_namespace

        await delete_namespace(url)


def _out(body: bytes = b"x", priority: int = 0) -> Outgoing:
    return Outgoing(task_id=uuid.uuid4().hex, queue="default", body=body, priority=priority)


async def test_expired_lease_is_redelivered_by_the_server_with_its_crash_counted(
    broker: NatsBroker,
) -> None:
    item = _out()
    await broker.publish([item])
    (first,) = await broker.fetch(["default"], 1, 1.0)
    (second,) = await broker.fetch(["default"], 1, LEASE + 5.0)  # AckWait ran out
    assert (second.attempt, second.crashes) == (2, 1)
    assert await second.retry(0.0)  # a settlement ends the row of crashes
    (third,) = await broker.fetch(["default"], 1, 2.0)
    assert (third.attempt, third.crashes) == (3, 0)
    assert await first.ack() is False
    assert await third.ack() is True


async def test_a_full_stream_refuses_an_enqueue_loudly(broker: NatsBroker) -> None:
    await broker.publish([_out() for _ in range(3)])  # max_msgs=3
    with pytest.raises(EnqueueError, match=r"maximum messages exceeded|full"):
        await broker.publish([_out()])


async def test_credentials_never_show(broker: NatsBroker) -> None:
    secret = NatsBroker("nats://alice:s3cret@127.0.0.1:4222?prefix=x")
    tokened = NatsBroker("nats://T0KENVALUE@127.0.0.1:4222")
    assert "s3cret" not in repr(secret) and "T0KENVALUE" not in repr(tokened)
    assert "s3cret" not in repr(secret.result_store())


async def test_a_task_that_kills_its_workers_is_dead_lettered_after_its_attempts() -> None:
    url = _url()
    app = Conveyor(url, environ={}, **behaviour_settings(poison_after=3))
    try:
        await app.connect()
    except BrokerUnavailable as exc:
        service_unavailable(str(exc))
    try:
        ran: list[str] = []

        @app.task(name="nats.crashes")
        async def crashes() -> None:
            ran.append("ran")

        handle = await crashes.kiq()
        for _ in range(3):  # three workers claim it and die: AckWait brings it back
            (delivery,) = await app.broker.fetch(["default"], 1, LEASE + 5.0)
            assert delivery.crashes == delivery.attempt - 1
        async with app.worker():
            result = await handle.wait_result(timeout=10)
        assert ran == [] and result.status is TaskStatus.DEAD
        assert await app.broker.locate(handle.task_id) == TaskLocation(Place.DEAD, 4)
        (entry,) = await app.broker.dead_letters()
        assert entry.id == handle.task_id and entry.reason.startswith("poison")
    finally:
        await app.close()
        from conveyor.brokers.nats.testing import delete_namespace

        await delete_namespace(url)


async def test_only_a_fetching_worker_sets_the_queues_ackwait(broker: NatsBroker) -> None:
    """AckWait is one setting of the queue's consumer: an enqueue-only client with another
    lease (an API process on the defaults) must not impose it on the workers."""
    assert await broker.fetch(["default"], 1, 0.05) == []  # registers the queue
    info = await broker.js.consumer_info(broker.names.tasks, "default")
    assert info.config.ack_wait == LEASE
    api = NatsBroker(broker.url, BrokerOptions(lease=30.0))
    await api.connect()
    try:
        await api.publish([_out()])
    finally:
        await api.close()
    info = await broker.js.consumer_info(broker.names.tasks, "default")
    assert info.config.ack_wait == LEASE
    (delivery,) = await broker.fetch(["default"], 1, 2.0)
    assert await delivery.ack()


async def test_a_new_priority_level_wakes_a_waiting_worker_and_is_read_first(
    broker: NatsBroker,
) -> None:
    """Levels are learned from the ``levels`` bucket: a worker already waiting gets a
    message at a level it never saw, published by another client, at once; from then on
    that level is read before the lower ones queued earlier."""
    publisher = NatsBroker(broker.url, BrokerOptions(lease=LEASE))
    await publisher.connect()
    try:
        waiting = asyncio.create_task(broker.fetch(["default"], 1, 5.0))
        await asyncio.sleep(0.3)  # sleep: the worker is waiting before the publish
        start = time.monotonic()
        urgent = _out(b"u", priority=7)
        await publisher.publish([urgent])
        (first,) = await waiting
        assert first.task_id == urgent.task_id
        assert time.monotonic() - start < 1.0, "the new level did not wake the fetch"
        assert await first.ack()
        await publisher.publish([_out(b"low")])
        await publisher.publish(
            [Outgoing(task_id=uuid.uuid4().hex, queue="default", body=b"high", priority=7)]
        )
        got = await broker.fetch(["default"], 2, 1.0)
        assert [d.body for d in got] == [b"high", b"low"]
        assert all([await d.ack() for d in got])
    finally:
        await publisher.close()


async def test_a_join_resumed_after_a_crash_counts_its_member_once(broker: NatsBroker) -> None:
    """JetStream has no transaction over two keys: a join counts the member (its index
    goes to the barrier's pending list), writes its outcome, then clears it. A worker
    that died between those steps runs the task again, and its join resumes where the
    first stopped; a member whose join finished joins again as a no-op. The callback is
    published once, when nothing is pending."""
    record = WorkflowRecord(uuid.uuid4().hex, "running", time.time(), ttl=600.0)
    callback = Outgoing(f"{record.workflow_id}.1", "default", b"cb", key="cb", key_ttl=60.0)
    barrier = Barrier(f"{record.workflow_id}.0", record.workflow_id, callback, 2, ttl=600.0)
    await broker.open_workflow(record, [barrier])
    workflows = broker._workflows
    # the first run of member 0 died after its count, before its outcome was written
    await workflows._change_barrier(
        barrier.barrier_id, lambda b: msgspec.structs.replace(b, j=1, pend=[0])
    )
    await broker.apply_follow(Follow(record.workflow_id, join=Join(barrier.barrier_id, 1, b"one")))
    assert await broker.fetch(["default"], 1, 0.2) == [], "fired with member 0 pending"
    again = Join(barrier.barrier_id, 0, b"zero")
    await broker.apply_follow(Follow(record.workflow_id, join=again))  # the second run
    await broker.apply_follow(Follow(record.workflow_id, join=again))  # and a third
    state = await broker.barrier(barrier.barrier_id)
    assert state is not None and (state.joined, state.fired) == (2, True)
    assert await broker.barrier_results(barrier.barrier_id, 0, 2) == [b"zero", b"one"]
    (fired,) = await broker.fetch(["default"], 2, 2.0)
    assert fired.task_id == callback.task_id
    assert await fired.ack()
    await workflows._fire(barrier.barrier_id)
    assert await broker.fetch(["default"], 1, 0.3) == [], "published twice"
