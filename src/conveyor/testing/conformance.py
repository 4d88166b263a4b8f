"""The broker conformance suite: what every broker must do, as public checks.

Any broker, ours or a third party's, proves itself the same way: the checks of the
capabilities its class declares (:func:`checks_for`), each given a factory::

    import pytest
    from conveyor.testing.conformance import Check, broker_factory, checks_for

    @pytest.mark.parametrize("check", checks_for(MyBroker.capabilities), ids=lambda c: c.__name__)
    async def test_my_broker(check: Check) -> None:
        await check(broker_factory("mybroker://localhost/test"))

(or let ``conveyor.testing.plugin`` generate these and the behaviour checks from one
fixture).

A :class:`BrokerFactory` opens a fresh, empty, connected broker for the given options
(``async with factory(options) as broker``); each check calls it once. Checks use short
real durations (leases of a fraction of a second), because leases on server brokers are
measured by the server's clock, not an injected one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, cast

import msgspec

from conveyor.brokers import broker_class_for
from conveyor.brokers.base import (
    AbortResult,
    Ack,
    Barrier,
    Broker,
    BrokerOptions,
    Capability,
    Delivery,
    FlowControl,
    Follow,
    Join,
    Outgoing,
    Retry,
    StoredResult,
    TaskCounts,
    WorkerInfo,
    WorkflowRecord,
    status_of,
)
from conveyor.message import SCHEMA_VERSION, Message, encode_message
from conveyor.result import AbortOutcome, TaskStatus

__all__ = [
    "CHECKS",
    "REQUIRES",
    "BrokerFactory",
    "Check",
    "broker_factory",
    "checks_for",
    "conformance_options",
]

LEASE = 0.6


class BrokerFactory(Protocol):
    def __call__(self, options: BrokerOptions) -> AbstractAsyncContextManager[Broker]: ...


Check = Callable[[BrokerFactory], Awaitable[None]]


def broker_factory(url: str) -> BrokerFactory:
    """A :class:`BrokerFactory` for the broker at ``url`` (its scheme registered with
    :func:`~conveyor.brokers.register_broker`): each call builds ``BrokerClass(url,
    options)`` and connects it. It is fresh and empty only if a new broker at ``url`` is:
    ``memory://`` is, a file or a server needs a new path or namespace per test.

    >>> await check_publish_fetch_ack(broker_factory("memory://"))    # doctest: +SKIP
    """

    @asynccontextmanager
    async def open_broker(options: BrokerOptions) -> AsyncIterator[Broker]:
        broker: Broker = broker_class_for(url)(url, options)
        await broker.connect()
        try:
            yield broker
        finally:
            await broker.close()

    return open_broker


def conformance_options(**changes: Any) -> BrokerOptions:
    """Broker options with compressed timeouts for the checks."""
    return dataclasses.replace(
        BrokerOptions(lease=LEASE, reap_interval=0.1, fetch_wait=0.2), **changes
    )


async def _status(broker: Broker, task_id: str) -> tuple[TaskStatus, int] | None:
    """(status, attempts) as users see them, or None: status_of(broker.locate(...))."""
    location = await broker.locate(task_id)
    return None if location is None else (status_of(location), location.attempts)


def _out(body: bytes = b"x", queue: str = "default", **kw: object) -> Outgoing:
    return Outgoing(task_id=uuid.uuid4().hex, queue=queue, body=body, **kw)  # type: ignore[arg-type]


async def _until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    """Poll ``check`` until it holds: a state reached by the server's clock (an expired
    key, lease or heartbeat), which no injected clock can move. Fails after ``within``."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.02)  # sleep: the poll interval of _until


async def _fetch_all(
    broker: Broker, queues: list[str], expect: int, wait: float = 2.0
) -> list[Delivery]:
    got: list[Delivery] = []
    deadline = time.monotonic() + wait
    while len(got) < expect and time.monotonic() < deadline:
        await broker.reap()
        got += await broker.fetch(queues, expect - len(got), 0.1)
    return got


async def check_publish_fetch_ack(factory: BrokerFactory) -> None:
    """Published messages are fetched once, byte-identical, with attempt 1; acked ones are gone."""
    async with factory(conformance_options()) as broker:
        items = [_out(f"body-{i}".encode()) for i in range(3)]
        assert await broker.publish(items) == [i.task_id for i in items]
        got = await broker.fetch(["default"], 10, 1.0)
        assert sorted(d.body for d in got) == sorted(i.body for i in items)
        assert all(d.attempt == 1 for d in got)
        assert {d.task_id for d in got} == {i.task_id for i in items}
        assert await broker.settle([(d, Ack()) for d in got]) == [True] * 3
        assert await broker.fetch(["default"], 10, 0.0) == []
        assert all([await broker.locate(i.task_id) is None for i in items])


async def check_fetch_respects_count(factory: BrokerFactory) -> None:
    """fetch(count=n) never claims more than n."""
    async with factory(conformance_options()) as broker:
        await broker.publish([_out() for _ in range(5)])
        first = await broker.fetch(["default"], 2, 1.0)
        assert len(first) == 2
        rest = await _fetch_all(broker, ["default"], 3)
        assert len(rest) == 3
        assert not {d.task_id for d in first} & {d.task_id for d in rest}


async def check_priority_then_fifo(factory: BrokerFactory) -> None:
    """Higher priority first; equal priority in publish order."""
    async with factory(conformance_options()) as broker:
        low1, low2, mid, high = (
            _out(b"l1"),
            _out(b"l2"),
            _out(b"m", priority=5),
            _out(b"h", priority=9),
        )
        await broker.publish([low1])
        await broker.publish([low2, mid])
        await broker.publish([high])
        order = []
        for _ in range(4):
            got = await broker.fetch(["default"], 1, 1.0)
            assert len(got) == 1
            order.append(got[0].body)
            await got[0].ack()
        assert order == [b"h", b"m", b"l1", b"l2"]


async def check_queues_are_separate(factory: BrokerFactory) -> None:
    """A worker only gets messages of the queues it asks for, in the order given."""
    async with factory(conformance_options()) as broker:
        await broker.publish([_out(b"a", queue="alpha"), _out(b"b", queue="beta")])
        assert [d.body for d in await broker.fetch(["beta"], 10, 1.0)] == [b"b"]
        assert [d.body for d in await broker.fetch(["alpha"], 10, 1.0)] == [b"a"]


async def check_delay(factory: BrokerFactory) -> None:
    """A message with not_before in the future is invisible until then."""
    async with factory(conformance_options()) as broker:
        due = time.time() + 0.5
        await broker.publish([_out(b"later", not_before=due)])
        await broker.reap()
        assert await broker.fetch(["default"], 1, 0.0) == []
        got = await _fetch_all(broker, ["default"], 1, wait=3.0)
        assert [d.body for d in got] == [b"later"]
        assert time.time() >= due - 0.05


async def check_retry_with_delay(factory: BrokerFactory) -> None:
    """retry(delay) hides the message for delay seconds and keeps the attempt count."""
    async with factory(conformance_options()) as broker:
        item = _out(b"r")
        await broker.publish([item])
        (first,) = await broker.fetch(["default"], 1, 1.0)
        assert await first.retry(0.4)
        assert (await _status(broker, item.task_id)) == (TaskStatus.RETRYING, 1)
        await broker.reap()
        assert await broker.fetch(["default"], 1, 0.0) == []
        (second,) = await _fetch_all(broker, ["default"], 1, wait=3.0)
        assert second.attempt == 2 and second.body == b"r"
        assert not await first.ack(), "a settled delivery must not settle twice"
        assert await second.ack()


async def check_dead_letter(factory: BrokerFactory) -> None:
    """dead_letter keeps the raw bytes and reason; requeue and delete work."""
    async with factory(conformance_options()) as broker:
        raw = b"\xc1\x00not msgpack\xff"
        item = _out(raw)
        await broker.publish([item])
        (d,) = await broker.fetch(["default"], 1, 1.0)
        assert await d.dead_letter("malformed message: test")
        entries = await broker.dead_letters()
        assert [(e.id, e.body, e.reason, e.attempts) for e in entries] == [
            (item.task_id, raw, "malformed message: test", 1)
        ]
        assert (await broker.get_dead_letter(item.task_id)) == entries[0]
        assert (await _status(broker, item.task_id)) == (TaskStatus.DEAD, 1)
        assert await broker.fetch(["default"], 1, 0.0) == []
        assert await broker.requeue_dead([item.task_id]) == 1
        assert await broker.dead_letters() == []
        (again,) = await broker.fetch(["default"], 1, 1.0)
        assert again.body == raw and again.attempt == 1
        assert await again.dead_letter("second")
        assert await broker.delete_dead(None) == 1
        assert await broker.dead_letters() == []


async def check_requeue_dead_keeps_priority(factory: BrokerFactory) -> None:
    """A requeued dead letter comes back at the priority it was sent with."""
    async with factory(conformance_options()) as broker:
        body = encode_message(
            Message(version=SCHEMA_VERSION, task_id="p", task="t", queue="default", priority=7)
        )
        urgent = _out(body, priority=7)
        await broker.publish([urgent])
        (d,) = await broker.fetch(["default"], 1, 1.0)
        assert await d.dead_letter("test")
        plain = _out(b"plain")
        await broker.publish([plain])
        assert await broker.requeue_dead([urgent.task_id]) == 1
        first, second = await _fetch_all(broker, ["default"], 2)
        assert [first.task_id, second.task_id] == [urgent.task_id, plain.task_id]


async def check_lease_expiry_redelivers_and_fences(factory: BrokerFactory) -> None:
    """An unrenewed lease expires; reap makes the message ready; the old owner is fenced."""
    async with factory(conformance_options()) as broker:
        item = _out(b"lease")
        await broker.publish([item])
        (old,) = await broker.fetch(["default"], 1, 1.0)
        # reaped and fetched again as soon as the lease has run out
        (new,) = await _fetch_all(broker, ["default"], 1, wait=LEASE + 5.0)
        assert new.attempt == 2 and new.task_id == item.task_id
        assert await old.ack() is False, "a zombie's completion must be rejected"
        assert await old.extend_lease(5) is False
        assert await new.ack() is True


async def check_extend_lease_keeps_ownership(factory: BrokerFactory) -> None:
    """Renewed leases (from the loop and from a thread) are not reaped."""
    async with factory(conformance_options()) as broker:
        await broker.publish([_out(b"a"), _out(b"b")])
        got = await broker.fetch(["default"], 2, 1.0)
        keeper = broker.lease_keeper()
        try:
            for _ in range(3):
                await asyncio.sleep(LEASE / 2)  # sleep: the lease runs by the server's clock
                assert await got[0].extend_lease(LEASE)
                ok: list[bool] = []

                def renew_from_thread(out: list[bool] = ok) -> None:
                    out.extend(keeper.renew([got[1]], LEASE))

                thread = threading.Thread(target=renew_from_thread)
                thread.start()
                await asyncio.to_thread(thread.join)
                assert ok == [True]
                await broker.reap()
                assert await broker.fetch(["default"], 2, 0.0) == []
        finally:
            keeper.close()
        assert await broker.settle([(d, Ack()) for d in got]) == [True, True]


async def check_release_is_uncharged(factory: BrokerFactory) -> None:
    """release() makes the message ready at once without counting the attempt."""
    async with factory(conformance_options()) as broker:
        await broker.publish([_out(b"rel")])
        (d,) = await broker.fetch(["default"], 1, 1.0)
        assert await d.release()
        (again,) = await _fetch_all(broker, ["default"], 1, wait=1.0)
        assert again.attempt == 1


async def check_batch_publish(factory: BrokerFactory) -> None:
    """A batch of 500 is published in one call and fetched completely."""
    async with factory(conformance_options()) as broker:
        items = [_out(str(i).encode()) for i in range(500)]
        assert await broker.publish(items) == [i.task_id for i in items]
        got = await _fetch_all(broker, ["default"], 500, wait=5.0)
        assert len(got) == 500
        assert {d.task_id for d in got} == {i.task_id for i in items}
        assert all(await broker.settle([(d, Ack()) for d in got]))


async def check_idempotency_key(factory: BrokerFactory) -> None:
    """Same key while queued, running or recently finished: one task, same id."""
    async with factory(conformance_options()) as broker:
        first = _out(b"k", key="report-42", key_ttl=30.0)
        second = _out(b"k2", key="report-42", key_ttl=30.0)
        assert await broker.publish([first]) == [first.task_id]
        assert await broker.publish([second]) == [first.task_id]
        (d,) = await broker.fetch(["default"], 5, 1.0)
        assert await broker.publish([second]) == [first.task_id]
        assert await d.ack()
        assert await broker.publish([second]) == [first.task_id]
        assert await broker.fetch(["default"], 5, 0.0) == []


async def check_duplicate_task_id(factory: BrokerFactory) -> None:
    """Publishing the same task id twice while it is queued yields one message."""
    async with factory(conformance_options()) as broker:
        item = _out(b"same")
        await broker.publish([item, item])
        got = await _fetch_all(broker, ["default"], 2, wait=0.5)
        assert len(got) == 1


async def check_blocking_fetch_wakes_on_publish(factory: BrokerFactory) -> None:
    """A fetch waiting on an empty queue returns soon after a publish, not at its timeout
    nor at its next poll (fetch_wait, 30 s here): within a 10 s wait, it woke."""
    async with factory(conformance_options(fetch_wait=30.0)) as broker:
        waiting = asyncio.create_task(broker.fetch(["default"], 1, 30.0))
        await asyncio.sleep(0.1)  # sleep: the fetch begins to wait (no portable signal)
        await broker.publish([_out(b"wake")])
        got = await asyncio.wait_for(waiting, 10.0)
        assert [d.body for d in got] == [b"wake"]


async def check_waiting_fetch_takes_a_delayed_message_when_due(factory: BrokerFactory) -> None:
    """A fetch waiting on an empty queue returns a delayed message published meanwhile
    (and a retry parked meanwhile) when it falls due, not at the end of its wait nor at its
    next poll (fetch_wait, 30 s here)."""
    async with factory(conformance_options(fetch_wait=30.0)) as broker:
        waiting = asyncio.create_task(broker.fetch(["default"], 1, 30.0))
        await asyncio.sleep(0.1)  # sleep: the fetch begins to wait (no portable signal)
        await broker.publish([_out(b"soon", not_before=time.time() + 0.2)])
        (got,) = await asyncio.wait_for(waiting, 10.0)
        assert got.body == b"soon"
        waiting = asyncio.create_task(broker.fetch(["default"], 1, 30.0))
        await asyncio.sleep(0.1)  # sleep: the fetch begins to wait (no portable signal)
        assert await got.retry(0.2)
        (again,) = await asyncio.wait_for(waiting, 10.0)
        assert (again.body, again.attempt) == (b"soon", 2)
        assert await again.ack()


async def check_interrupt_fetch(factory: BrokerFactory) -> None:
    """interrupt_fetch() ends a waiting fetch at once (not at its next poll: fetch_wait is
    30 s here), and one that has not begun to wait."""
    async with factory(conformance_options(fetch_wait=30.0)) as broker:
        waiting = asyncio.create_task(broker.fetch(["default"], 1, 30.0))
        await asyncio.sleep(0.1)  # sleep: the fetch begins to wait (no portable signal)
        broker.interrupt_fetch()
        assert await asyncio.wait_for(waiting, 10.0) == []
        broker.interrupt_fetch()  # before the fetch: it returns rather than wait
        assert await asyncio.wait_for(broker.fetch(["default"], 1, 30.0), 10.0) == []
        await broker.publish([_out(b"after")])  # and the next fetch works as usual
        (got,) = await asyncio.wait_for(broker.fetch(["default"], 1, 30.0), 10.0)
        assert got.body == b"after"


async def check_locate_and_depths(factory: BrokerFactory) -> None:
    """locate and queue_depths follow a message through its states."""
    async with factory(conformance_options()) as broker:
        a, b = _out(b"a"), _out(b"b", not_before=time.time() + 60)
        await broker.publish([a, b])
        assert await _status(broker, a.task_id) == (TaskStatus.QUEUED, 0)
        assert await _status(broker, b.task_id) == (TaskStatus.QUEUED, 0)
        depth = {q.queue: q for q in await broker.queue_depths()}["default"]
        assert (depth.ready, depth.delayed, depth.running) == (1, 1, 0)
        (d,) = await broker.fetch(["default"], 1, 1.0)
        assert await _status(broker, a.task_id) == (TaskStatus.RUNNING, 1)
        assert await d.ack()
        assert await _status(broker, a.task_id) is None
        assert await _status(broker, "no-such-task") is None


async def check_result_store(factory: BrokerFactory) -> None:
    """Results: put/get, push-based wait, wait timeout, TTL expiry, delete."""
    # fetch_wait is also the result wait's fallback poll: 30 s, so a wait that ends within
    # 10 s was woken by the put
    async with factory(conformance_options(fetch_wait=30.0)) as broker:
        store = broker.result_store()
        assert await store.get("missing") is None
        assert await asyncio.wait_for(store.wait("missing", 0.3), 10.0) is None
        waiter = asyncio.create_task(store.wait("t1", 30.0))
        await asyncio.sleep(0.1)  # sleep: the wait begins (no portable signal)
        await store.put([StoredResult("t1", b"result-bytes", 60.0)])
        assert await asyncio.wait_for(waiter, 10.0) == b"result-bytes"
        assert await store.get("t1") == b"result-bytes"
        await store.put([StoredResult("short", b"s", 0.3)])
        assert await store.get("short") == b"s"

        async def expired() -> bool:
            return await store.get("short") is None

        await _until(expired, 5.0, "a result past its ttl is gone")
        await store.delete("t1")
        assert await store.get("t1") is None
        await store.set_progress("t2", b"half", 60.0)
        assert await store.get_progress("t2") == b"half"


async def check_ack_stores_result_atomically(factory: BrokerFactory) -> None:
    """ack(result) on a broker's own store makes the result visible by the time ack returns."""
    async with factory(conformance_options()) as broker:
        item = _out(b"r")
        await broker.publish([item])
        (d,) = await broker.fetch(["default"], 1, 1.0)
        assert await d.ack(StoredResult(item.task_id, b"value", 60.0))
        assert await broker.result_store().get(item.task_id) == b"value"


async def check_reused_id_forgets_result(factory: BrokerFactory) -> None:
    """Publishing a finished task's id again with ``reused_id`` forgets its result and
    progress in the same write: the new run's waiters never see the old outcome."""
    async with factory(conformance_options()) as broker:
        store = broker.result_store()
        item = _out(b"first")
        await broker.publish([item])
        (d,) = await broker.fetch(["default"], 1, 1.0)
        await store.set_progress(item.task_id, b"90%", 60.0)
        assert await d.ack(StoredResult(item.task_id, b"old", 60.0))
        again = Outgoing(task_id=item.task_id, queue="default", body=b"second", reused_id=True)
        assert await broker.publish([again]) == [item.task_id]
        assert await store.get(item.task_id) is None, "the old run's result answers"
        assert await store.get_progress(item.task_id) is None, "the old run's progress shows"
        (d2,) = await broker.fetch(["default"], 1, 1.0)
        assert d2.body == b"second"
        assert await d2.ack(StoredResult(item.task_id, b"new", 60.0))
        assert await store.get(item.task_id) == b"new"


def _aborted_as(calls: list[tuple[str, bytes, int]], task_id: str) -> AbortResult:
    """An abort result builder that records its calls and stores b"aborted:<body>"."""

    def build(body: bytes, attempts: int) -> StoredResult:
        calls.append((task_id, body, attempts))
        return StoredResult(task_id, b"aborted:" + body, 60.0)

    return build


def _never_called(body: bytes, attempts: int) -> StoredResult:
    raise AssertionError("abort() built a result for a task it did not remove")


async def check_abort(factory: BrokerFactory) -> None:
    """abort() removes a queued, delayed or retry-waiting message with its result (it is
    never fetched); marks a leased one, which abort_marks and the abort signal report and a
    later claim carries; leaves a dead letter alone; and knows no other id."""
    async with factory(conformance_options()) as broker:
        store = broker.result_store()
        calls: list[tuple[str, bytes, int]] = []
        queued = _out(b"q", key="abort-key", key_ttl=30.0)
        delayed = _out(b"d", not_before=time.time() + 60)
        await broker.publish([queued, delayed])
        for item in (queued, delayed):
            outcome = await broker.abort(item.task_id, _aborted_as(calls, item.task_id))
            assert outcome is AbortOutcome.DEQUEUED
            assert await store.get(item.task_id) == b"aborted:" + item.body
            assert await _status(broker, item.task_id) is None
            assert await broker.abort(item.task_id, _never_called) is AbortOutcome.UNKNOWN
        assert calls[-2:] == [(queued.task_id, b"q", 0), (delayed.task_id, b"d", 0)]
        await broker.reap()
        assert await broker.fetch(["default"], 10, 0.0) == []
        # an aborted task ended: its idempotency key answers for it, like a finished one's
        assert await broker.publish([_out(b"again", key="abort-key", key_ttl=30.0)]) == [
            queued.task_id
        ]
        assert await broker.fetch(["default"], 10, 0.0) == []

        waiting = _out(b"w")
        await broker.publish([waiting])
        (first,) = await broker.fetch(["default"], 1, 1.0)
        assert await first.retry(30.0)
        outcome = await broker.abort(waiting.task_id, _aborted_as(calls, waiting.task_id))
        assert outcome is AbortOutcome.DEQUEUED
        assert calls[-1] == (waiting.task_id, b"w", 1), "the started attempts are passed on"

        running = _out(b"run")
        await broker.publish([running])
        (d,) = await broker.fetch(["default"], 1, 1.0)
        assert d.abort_requested is False
        assert await broker.wait_abort_signal(0.01) == []  # listening from now on
        signal = asyncio.create_task(broker.wait_abort_signal(5.0))
        assert await broker.abort_marks([d]) == [False]
        assert await broker.abort(running.task_id, _never_called) is AbortOutcome.SIGNALLED
        assert running.task_id in await asyncio.wait_for(signal, 5.0)
        assert await broker.abort_marks([d]) == [True]
        assert await broker.abort(running.task_id, _never_called) is AbortOutcome.SIGNALLED
        assert await _status(broker, running.task_id) == (TaskStatus.RUNNING, 1)
        assert await store.get(running.task_id) is None, "the worker stores the result"
        # its worker died: the mark survives the reap, and the next claim carries it
        (again,) = await _fetch_all(broker, ["default"], 1, wait=LEASE + 5.0)
        assert (again.task_id, again.attempt, again.abort_requested) == (running.task_id, 2, True)
        assert await again.ack(StoredResult(running.task_id, b"aborted by its worker", 60.0))
        assert await d.ack(StoredResult(running.task_id, b"zombie", 60.0)) is False
        assert await store.get(running.task_id) == b"aborted by its worker"
        assert await broker.abort(running.task_id, _never_called) is AbortOutcome.UNKNOWN

        dead = _out(b"x")
        await broker.publish([dead])
        (d,) = await broker.fetch(["default"], 1, 1.0)
        assert await d.dead_letter("test")
        entries = await broker.dead_letters()
        assert await broker.abort(dead.task_id, _never_called) is AbortOutcome.FINISHED
        assert await broker.dead_letters() == entries
        assert await broker.abort("no-such-task", _never_called) is AbortOutcome.UNKNOWN


async def check_abort_races_fetch(factory: BrokerFactory) -> None:
    """Aborts racing fetches: every task is either removed unfetched (DEQUEUED, result
    stored) or fetched and marked (SIGNALLED), never both and never neither."""
    async with factory(conformance_options()) as broker:
        items = [_out(str(i).encode()) for i in range(40)]
        await broker.publish(items)
        fetched: list[Delivery] = []
        outcomes: dict[str, AbortOutcome] = {}
        calls: list[tuple[str, bytes, int]] = []

        async def fetch() -> None:  # from the front, one at a time, while abort() works back
            while True:
                got = await broker.fetch(["default"], 1, 0.05)
                fetched.extend(got)
                if not got and len(outcomes) == len(items):
                    return
                await asyncio.sleep(0)

        async def abort() -> None:
            for item in reversed(items):
                outcomes[item.task_id] = await broker.abort(
                    item.task_id, _aborted_as(calls, item.task_id)
                )
                await asyncio.sleep(0)

        await asyncio.wait_for(asyncio.gather(fetch(), abort()), 30.0)
        by_id = {d.task_id: d for d in fetched}
        assert len(by_id) == len(fetched), "a task was fetched twice"
        marks = dict(zip(by_id, await broker.abort_marks(list(by_id.values())), strict=True))
        for item in items:
            outcome = outcomes[item.task_id]
            if outcome is AbortOutcome.DEQUEUED:
                assert item.task_id not in by_id, "a removed task was fetched"
                assert await broker.result_store().get(item.task_id) == b"aborted:" + item.body
            else:
                assert outcome is AbortOutcome.SIGNALLED, outcome
                assert marks[item.task_id], "a fetched task lost its mark"
        assert {o for o in outcomes.values()} <= {AbortOutcome.DEQUEUED, AbortOutcome.SIGNALLED}


async def check_workers_heartbeat(factory: BrokerFactory) -> None:
    """Heartbeats list live workers and forget expired ones."""
    async with factory(conformance_options()) as broker:
        now = time.time()
        info = WorkerInfo("w1", "host", 1, ["default"], 4, 1, 10, now, now, ["t"])
        await broker.heartbeat(info, 0.5)
        assert [w.worker_id for w in await broker.workers()] == ["w1"]

        async def forgotten() -> bool:
            return await broker.workers() == []

        await _until(forgotten, 5.0, "an expired heartbeat is forgotten")


async def check_idempotency_key_admits_one(factory: BrokerFactory) -> None:
    """One key admits one task: racing publishes with different task ids agree on one id,
    and a late duplicate after ack or dead-lettering publishes nothing until key_ttl ends.

    The scheduler's exactly-once per tick (G7) is this property: every scheduler publishes
    every tick with a fresh task id and the key ``tick:<schedule>:<fire time>``.
    """
    async with factory(conformance_options()) as broker:
        # (a) 10 concurrent publishes, 10 task ids, one key: one task, one id for all
        key = "tick:nightly:1000.000"
        racers = [_out(f"racer-{i}".encode(), key=key, key_ttl=30.0) for i in range(10)]
        replies = await asyncio.gather(*(broker.publish([r]) for r in racers))
        winner = replies[0][0]
        assert winner in {r.task_id for r in racers}
        assert replies == [[winner]] * 10, "every racer must get the one admitted task's id"
        got = await _fetch_all(broker, ["default"], 10, wait=0.5)
        assert [d.task_id for d in got] == [winner], "exactly one task may exist per key"
        for r in racers:
            if r.task_id != winner:
                assert await _status(broker, r.task_id) is None

        # (b) acked: a late duplicate within key_ttl gets the old id and publishes nothing
        assert await got[0].ack()
        late = _out(b"late", key=key, key_ttl=30.0)
        assert await broker.publish([late]) == [winner]
        assert await broker.fetch(["default"], 5, 0.0) == []
        assert await _status(broker, late.task_id) is None

        # (c) dead-lettered: a late duplicate (a fresh id, or the dead task's own id) gets
        # the old id, publishes nothing and leaves the dead letter as it was
        key = "tick:nightly:2000.000"
        first = _out(b"poison", key=key, key_ttl=30.0)
        assert await broker.publish([first]) == [first.task_id]
        (d,) = await broker.fetch(["default"], 1, 1.0)
        assert await d.dead_letter("poison: test")
        entries = await broker.dead_letters()
        assert [e.id for e in entries] == [first.task_id]
        for dup in (_out(b"late", key=key, key_ttl=30.0), first):
            assert await broker.publish([dup]) == [first.task_id]
            await broker.reap()
            assert await broker.fetch(["default"], 5, 0.0) == []
            assert await broker.dead_letters() == entries, "a duplicate disturbed the DLQ"
            assert await _status(broker, first.task_id) == (TaskStatus.DEAD, 1)

        # (d) once key_ttl has passed since the task ended, the key admits a new task
        key = "tick:nightly:3000.000"
        short = _out(b"short", key=key, key_ttl=0.3)
        assert await broker.publish([short]) == [short.task_id]
        (d,) = await broker.fetch(["default"], 1, 1.0)
        assert await d.ack()
        assert await broker.publish([_out(b"early", key=key, key_ttl=0.3)]) == [short.task_id]
        fresh = _out(b"fresh", key=key, key_ttl=0.3)

        async def admitted() -> bool:  # until then each try gets the old id, and is dropped
            return await broker.publish([fresh]) == [fresh.task_id]

        await _until(admitted, 5.0, "the key admits a new task once key_ttl has passed")
        (d,) = await _fetch_all(broker, ["default"], 1)
        assert (d.task_id, d.body) == (fresh.task_id, b"fresh")
        assert await d.ack()


async def check_schedule_store(factory: BrokerFactory) -> None:
    """Schedule definitions are saved, replaced, loaded and deleted."""
    async with factory(conformance_options()) as broker:
        store = broker.schedule_store()
        await store.save_schedule("s1", b"spec-1")
        await store.save_schedule("s1", b"spec-1b")
        await store.save_schedule("s2", b"spec-2")
        assert await store.load_schedules() == {"s1": b"spec-1b", "s2": b"spec-2"}
        assert await store.delete_schedule("s2") is True
        assert await store.delete_schedule("s2") is False
        assert await store.load_schedules() == {"s1": b"spec-1b"}


async def check_event_store(factory: BrokerFactory) -> None:
    """The event log keeps records in order, pages by cursor, and is capped."""
    async with factory(conformance_options(events_max=50)) as broker:
        store = broker.event_store()
        assert await store.read() == [] and await store.recent() == []
        await store.append([b"e1", b"e2"])
        await store.append([b"e3"])
        rows = await store.read()
        assert [r for _, r in rows] == [b"e1", b"e2", b"e3"]
        assert [r for _, r in await store.read(rows[0][0])] == [b"e2", b"e3"]
        assert [r for _, r in await store.read(rows[0][0], limit=1)] == [b"e2"]
        assert await store.read(rows[-1][0]) == []
        assert await store.recent(2) == rows[1:]
        await asyncio.sleep(0.15)  # sleep: past a reap_interval: a store trims once per interval
        await store.append([str(i).encode() for i in range(200)])
        await asyncio.sleep(0.15)  # sleep: and past the next one
        await store.append([b"last"])
        kept = await store.recent(1000)
        # Redis trims approximately (whole stream nodes): at least the cap, fewer than all
        assert 50 <= len(kept) < 204
        assert kept[-1][1] == b"last"
        assert [r for _, r in kept[-3:]] == [b"198", b"199", b"last"]
        # reading after a trimmed cursor starts at the oldest record kept
        assert (await store.read(rows[0][0], limit=1))[0] == kept[0]


async def check_counts(factory: BrokerFactory) -> None:
    """Flushed counts add up, per minute and in total, whichever worker flushed them and
    however many flush at once; minutes older than ``counts_kept`` are dropped, their
    totals kept."""
    async with factory(conformance_options(counts_kept=3600.0)) as broker:
        assert await broker.counts(0.0) == TaskCounts()
        minute = int(time.time()) // 60 * 60
        earlier, ancient = minute - 60, minute - 2 * 3600  # ancient: past counts_kept
        sent, failed = ("send", "default", "succeeded"), ("send", "default", "failed")
        odd = ("name.with:odd|chars é", "q.1 x", "retried")  # separators must not split
        await broker.record_counts({(minute, *sent): 3, (minute, *failed): 1, (earlier, *sent): 2})
        # five workers flushing the same counters at once: every flush counts
        await asyncio.gather(*(broker.record_counts({(minute, *sent): 1}) for _ in range(5)))
        await broker.record_counts({(minute, *odd): 2, (ancient, "old", "default", "dead"): 4})
        await broker.record_counts({})
        got = await broker.counts(earlier)
        assert got.totals == {sent: 10, failed: 1, odd: 2, ("old", "default", "dead"): 4}, got
        assert got.minutes == {earlier: {sent: 2}, minute: {sent: 8, failed: 1, odd: 2}}, got
        assert list((await broker.counts(minute)).minutes) == [minute]
        # all that is kept (a day by default: the minutes may be read another way)
        assert (await broker.counts(0.0)).minutes == got.minutes, "a minute past counts_kept"
        assert (await broker.counts(float("inf"))) == TaskCounts(got.totals)


# -- workflows ----------------------------------------------------------------------------


def _workflow(ttl: float = 3600.0) -> WorkflowRecord:
    return WorkflowRecord(uuid.uuid4().hex, "running", time.time(), ttl=ttl, info=b"info")


def _barrier(record: WorkflowRecord, size: int | None, *, partial: bool = False) -> Barrier:
    """A barrier whose callback is keyed by its own task id, as workers publish them."""
    callback_id = f"{record.workflow_id}.1"
    callback = _out(b"callback", workflow=record.workflow_id, key=callback_id, key_ttl=60.0)
    callback = msgspec.structs.replace(callback, task_id=callback_id)
    return Barrier(f"{record.workflow_id}.0", record.workflow_id, callback, size, partial, 60.0)


async def _members(broker: Broker, record: WorkflowRecord, n: int) -> list[Delivery]:
    items = [_out(f"member-{i}".encode(), workflow=record.workflow_id) for i in range(n)]
    await broker.publish(items)
    got = await _fetch_all(broker, ["default"], n)
    order = {item.task_id: i for i, item in enumerate(items)}
    return sorted(got, key=lambda d: order[d.task_id])


async def check_follow_publishes_with_the_settlement(factory: BrokerFactory) -> None:
    """A settlement's Follow publishes what comes next in the same step; a zombie's
    settlement (its lease taken over) applies none of it."""
    async with factory(conformance_options()) as broker:
        record = _workflow()
        await broker.open_workflow(record)
        await broker.publish([_out(b"first", workflow=record.workflow_id)])
        (zombie,) = await broker.fetch(["default"], 1, 1.0)
        assert await zombie.extend_lease(0.0)
        (owner,) = await _fetch_all(broker, ["default"], 1, wait=LEASE + 5.0)
        lost = Follow(record.workflow_id, publish=(_out(b"zombie's"),), finish="failed")
        assert await zombie.ack(None, lost) is False
        step = _out(b"next", workflow=record.workflow_id, key="next-step", key_ttl=60.0)
        assert await owner.ack(None, Follow(record.workflow_id, publish=(step,))) is True
        (following,) = await _fetch_all(broker, ["default"], 1, wait=1.0)
        assert await broker.fetch(["default"], 5, 0.0) == []
        assert (following.task_id, following.body) == (step.task_id, b"next")
        # the same step published again (a worker that ran the task twice): one message
        assert await broker.publish([step]) == [step.task_id]
        assert await following.ack()
        assert await broker.publish([step]) == [step.task_id]
        assert await broker.fetch(["default"], 5, 0.0) == []
        assert (await broker.workflow(record.workflow_id)) == record, "not finished by a zombie"


async def check_barrier_fires_its_callback_once(factory: BrokerFactory) -> None:
    """A barrier publishes its callback when its last member joins (in the member's
    settlement), and only then, once; the outcomes read back in member order; a member
    that joins again changes nothing."""
    async with factory(conformance_options()) as broker:
        record = _workflow()
        barrier = _barrier(record, 3)
        await broker.open_workflow(record, [barrier])
        members = await _members(broker, record, 3)
        for index in (2, 0):
            join = Join(barrier.barrier_id, index, f"outcome-{index}".encode())
            assert await members[index].ack(None, Follow(record.workflow_id, join=join))
        state = await broker.barrier(barrier.barrier_id)
        assert state is not None
        assert (state.size, state.joined, state.failed, state.fired) == (3, 2, 0, False)
        assert await broker.fetch(["default"], 5, 0.0) == [], "fired before its last member"
        last = Join(barrier.barrier_id, 1, b"outcome-1")
        assert await members[1].ack(None, Follow(record.workflow_id, join=last))
        (callback,) = await _fetch_all(broker, ["default"], 1, wait=1.0)
        assert (callback.task_id, callback.body) == (barrier.callback.task_id, b"callback")
        expected = [b"outcome-0", b"outcome-1", b"outcome-2"]
        assert await broker.barrier_results(barrier.barrier_id, 0, 3) == expected
        assert await broker.barrier_results(barrier.barrier_id, 1, 2) == [b"outcome-1"]
        await broker.apply_follow(
            Follow(record.workflow_id, join=Join(barrier.barrier_id, 0, b"again", failed=True))
        )
        state = await broker.barrier(barrier.barrier_id)
        assert state is not None and (state.joined, state.failed, state.fired) == (3, 0, True)
        assert await broker.barrier_results(barrier.barrier_id, 0, 3) == expected
        # opening it again (a continuation started twice) keeps it as it is
        await broker.open_workflow(None, [barrier])
        state = await broker.barrier(barrier.barrier_id)
        assert state is not None and (state.joined, state.fired) == (3, True)
        assert await callback.ack()
        assert await _fetch_all(broker, ["default"], 1, wait=0.3) == [], "fired twice"
        assert await broker.barrier("no-such-barrier") is None


async def check_barrier_sealed_after_its_members(factory: BrokerFactory) -> None:
    """A barrier opened without a size (members still being published) fires only once
    sealed, at once if every member already joined; a barrier of size 0 fires when it
    opens."""
    async with factory(conformance_options()) as broker:
        record = _workflow()
        barrier = _barrier(record, None)
        await broker.open_workflow(record, [barrier])
        for index in range(2):
            join = Join(barrier.barrier_id, index, b"x")
            await broker.apply_follow(Follow(record.workflow_id, join=join))
        assert await broker.fetch(["default"], 5, 0.0) == [], "fired before it was sealed"
        await broker.seal_barrier(barrier.barrier_id, 2)
        (callback,) = await _fetch_all(broker, ["default"], 1, wait=1.0)
        assert callback.task_id == barrier.callback.task_id
        state = await broker.barrier(barrier.barrier_id)
        assert state is not None and (state.size, state.joined, state.fired) == (2, 2, True)
        empty = _barrier(_workflow(), 0)
        await broker.open_workflow(None, [empty])
        (fired,) = await _fetch_all(broker, ["default"], 1, wait=1.0)
        assert fired.task_id == empty.callback.task_id


async def check_failed_member_fires_the_callback_at_once(factory: BrokerFactory) -> None:
    """A member that joins failed fires its barrier's callback at once (the callback then
    fails without running) and is the first failure; a ``partial`` barrier waits for
    every member instead."""
    async with factory(conformance_options()) as broker:
        record = _workflow()
        barrier = _barrier(record, 3)
        await broker.open_workflow(record, [barrier])
        members = await _members(broker, record, 3)
        failed = Join(barrier.barrier_id, 1, b"failure", failed=True)
        assert await members[1].dead_letter("boom", None, Follow(record.workflow_id, join=failed))
        (callback,) = await _fetch_all(broker, ["default"], 1, wait=1.0)
        assert callback.task_id == barrier.callback.task_id
        for index in (0, 2):
            join = Join(barrier.barrier_id, index, b"ok", failed=index == 2)
            assert await members[index].ack(None, Follow(record.workflow_id, join=join))
        state = await broker.barrier(barrier.barrier_id)
        assert state is not None
        assert (state.joined, state.failed, state.first_failure) == (3, 2, 1)
        assert await callback.ack()
        assert await _fetch_all(broker, ["default"], 1, wait=0.3) == [], "fired twice"
        partial_record = _workflow()
        partial = _barrier(partial_record, 2, partial=True)
        await broker.open_workflow(partial_record, [partial])
        await broker.apply_follow(
            Follow(partial_record.workflow_id, join=Join(partial.barrier_id, 0, b"e", failed=True))
        )
        assert await broker.fetch(["default"], 5, 0.0) == [], "a partial barrier fired early"
        await broker.apply_follow(
            Follow(partial_record.workflow_id, join=Join(partial.barrier_id, 1, b"ok"))
        )
        (fired,) = await _fetch_all(broker, ["default"], 1, wait=1.0)
        assert fired.task_id == partial.callback.task_id


async def check_workflow_records(factory: BrokerFactory) -> None:
    """A workflow's record is saved, read, listed newest first and counted by state;
    saving it again replaces its info and keeps its state; a Follow ends it once, with
    the task that failed, and stores the results it carries with the settlement."""
    async with factory(conformance_options()) as broker:
        first, second = _workflow(), _workflow()
        second = WorkflowRecord(second.workflow_id, "running", first.created_at + 1, ttl=60.0)
        await broker.open_workflow(first)
        await broker.open_workflow(second)
        assert await broker.workflow(first.workflow_id) == first
        assert await broker.workflow("no-such-workflow") is None
        listed = await broker.workflows()
        assert [r.workflow_id for r in listed] == [second.workflow_id, first.workflow_id]
        assert await broker.workflow_counts() == {"running": 2}
        await broker.publish([_out(b"step", workflow=first.workflow_id)])
        (d,) = await broker.fetch(["default"], 1, 1.0)
        tail = StoredResult(f"{first.workflow_id}.9", b"tail's result", 60.0)
        ended = Follow(first.workflow_id, results=(tail,), finish="failed", failed_task=d.task_id)
        assert await d.dead_letter("boom", None, ended)
        record = await broker.workflow(first.workflow_id)
        assert record is not None
        assert (record.state, record.failed_task) == ("failed", d.task_id)
        assert record.finished_at >= record.created_at
        if Capability.RESULTS in broker.capabilities:
            assert await broker.result_store().get(tail.task_id) == b"tail's result"
        await broker.apply_follow(Follow(first.workflow_id, finish="succeeded"))
        again = await broker.workflow(first.workflow_id)
        assert again is not None and again.state == "failed", "a workflow ended twice"
        await broker.open_workflow(WorkflowRecord(first.workflow_id, "running", 0.0, info=b"new"))
        again = await broker.workflow(first.workflow_id)
        assert again is not None and (again.state, again.info) == ("failed", b"new")
        assert [r.workflow_id for r in await broker.workflows("failed")] == [first.workflow_id]
        assert await broker.workflow_counts() == {"running": 1, "failed": 1}


async def check_abort_workflow(factory: BrokerFactory) -> None:
    """Aborting a running workflow gives the ids of its tasks the broker holds (waiting
    or leased), once; from then on nothing of it is published (no next step, no
    callback) and it stays aborted."""
    async with factory(conformance_options()) as broker:
        record = _workflow()
        barrier = _barrier(record, 2)
        await broker.open_workflow(record, [barrier])
        items = [_out(f"t{i}".encode(), workflow=record.workflow_id) for i in range(3)]
        await broker.publish([*items, _out(b"other")])
        got = await _fetch_all(broker, ["default"], 4)
        done = next(d for d in got if d.task_id == items[2].task_id)
        assert await done.ack()  # ended before the abort: not held any more
        other = next(d for d in got if d.body == b"other")
        assert await other.ack()
        before, held = await broker.abort_workflow(record.workflow_id)
        assert before == record
        assert sorted(held) == sorted(i.task_id for i in items[:2])
        after = await broker.workflow(record.workflow_id)
        assert after is not None and after.state == "aborted"
        assert await broker.abort_workflow(record.workflow_id) == (after, [])
        assert await broker.abort_workflow("no-such-workflow") == (None, [])
        members = [d for d in got if d.task_id in (items[0].task_id, items[1].task_id)]
        late = Follow(
            record.workflow_id,
            publish=(_out(b"next", workflow=record.workflow_id),),
            finish="succeeded",
        )
        for index, member in enumerate(members):
            join = Join(barrier.barrier_id, index, b"x")
            assert await member.ack(None, msgspec.structs.replace(late, join=join))
        assert await _fetch_all(broker, ["default"], 1, wait=0.3) == [], "published after abort"
        final = await broker.workflow(record.workflow_id)
        assert final is not None and final.state == "aborted"


# -- flow control --------------------------------------------------------------------


def _flow(broker: Broker) -> FlowControl:
    return cast("FlowControl", broker)


async def check_uncharged_retry(factory: BrokerFactory) -> None:
    """``Retry(delay, charge=False)`` (a flow-control deferral) hides the message for
    ``delay`` seconds and gives the attempt back: the next claim is attempt 1 again."""
    async with factory(conformance_options()) as broker:
        item = _out(b"u")
        await broker.publish([item])
        (first,) = await broker.fetch(["default"], 1, 1.0)
        assert (await broker.settle([(first, Retry(0.3, charge=False))])) == [True]
        assert (await _status(broker, item.task_id)) == (TaskStatus.QUEUED, 0)
        await broker.reap()
        assert await broker.fetch(["default"], 1, 0.0) == []
        (second,) = await _fetch_all(broker, ["default"], 1, wait=3.0)
        assert second.attempt == 1
        assert await second.ack()


async def check_token_bucket(factory: BrokerFactory) -> None:
    """A new bucket is full: ``burst`` takes succeed at once, the next waits about
    1/rate seconds; buckets of other keys are apart; a token comes back with time."""
    async with factory(conformance_options()) as broker:
        flow, key = _flow(broker), f"bucket-{uuid.uuid4().hex[:8]}"
        assert [await flow.take_token(key, 5.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
        wait = await flow.take_token(key, 5.0, 3)
        assert 0.0 < wait <= 0.2 + 0.05, wait
        assert await flow.take_token(key + "-other", 5.0, 3) == 0.0
        await asyncio.sleep(wait + 0.05)
        assert await flow.take_token(key, 5.0, 3) == 0.0
        assert await flow.take_token(key, 5.0, 3) > 0.0


async def check_permits_are_leased(factory: BrokerFactory) -> None:
    """A semaphore gives ``limit`` permits; a holder asking again keeps its own; a
    released permit is free at once; an unrenewed one comes back when its lease ends,
    a renewed one does not."""
    async with factory(conformance_options()) as broker:
        flow, key = _flow(broker), f"sem-{uuid.uuid4().hex[:8]}"
        assert await flow.acquire_permit(key, 2, "a", 0.5)
        assert await flow.acquire_permit(key, 2, "b", 30.0)
        assert not await flow.acquire_permit(key, 2, "c", 30.0)
        assert await flow.acquire_permit(key, 2, "a", 0.5), "a holder keeps its permit"
        await flow.release_permits([(key, "b")])
        assert await flow.acquire_permit(key, 2, "c", 30.0)
        assert not await flow.acquire_permit(key, 2, "d", 30.0)
        await asyncio.sleep(0.7)  # a's lease ended: a dead worker's permit returns
        assert await flow.acquire_permit(key, 2, "d", 0.6)
        await asyncio.sleep(0.3)
        await flow.renew_permits([(key, "d")], 0.6)
        await asyncio.sleep(0.4)  # past d's first lease, within its renewed one
        assert not await flow.acquire_permit(key, 2, "e", 30.0)
        await flow.renew_permits([(key, "a")], 30.0)  # expired and dropped: not taken again
        await flow.release_permits([(key, "c"), (key, "d")])
        assert await flow.acquire_permit(key, 2, "e", 30.0)
        assert await flow.acquire_permit(key, 2, "f", 30.0)


async def check_marks(factory: BrokerFactory) -> None:
    """Marks hold the newest value written, until their time to live ends."""
    async with factory(conformance_options()) as broker:
        flow, name = _flow(broker), f"mark-{uuid.uuid4().hex[:8]}"
        assert await flow.get_marks([name]) == [None]
        await flow.put_marks({name: "one", name + "-b": "b"}, 30.0)
        await flow.put_marks({name: "two"}, 0.3)
        assert await flow.get_marks([name, name + "-b"]) == ["two", "b"]
        await asyncio.sleep(0.5)
        assert await flow.get_marks([name, name + "-b"]) == [None, "b"]


# Each check and the capabilities it needs; it runs on a broker that declares them all.
_QUEUE, _PRIORITY, _ABORT, _ADMIN, _WORKFLOWS = (
    Capability.QUEUE,
    Capability.PRIORITY,
    Capability.ABORT,
    Capability.ADMIN,
    Capability.WORKFLOWS,
)
REQUIRES: dict[Check, frozenset[Capability]] = {
    check: frozenset(needs)
    for check, needs in [
        (check_publish_fetch_ack, {_QUEUE}),
        (check_fetch_respects_count, {_QUEUE}),
        (check_priority_then_fifo, {_QUEUE, _PRIORITY}),
        (check_queues_are_separate, {_QUEUE}),
        (check_delay, {_QUEUE}),
        (check_retry_with_delay, {_QUEUE}),
        (check_lease_expiry_redelivers_and_fences, {_QUEUE}),
        (check_extend_lease_keeps_ownership, {_QUEUE}),
        (check_release_is_uncharged, {_QUEUE}),
        (check_batch_publish, {_QUEUE}),
        (check_idempotency_key, {_QUEUE}),
        (check_duplicate_task_id, {_QUEUE}),
        (check_blocking_fetch_wakes_on_publish, {_QUEUE}),
        (check_waiting_fetch_takes_a_delayed_message_when_due, {_QUEUE}),
        (check_interrupt_fetch, {_QUEUE}),
        (check_dead_letter, {_QUEUE, _ADMIN}),
        (check_requeue_dead_keeps_priority, {_QUEUE, _ADMIN, _PRIORITY}),
        (check_idempotency_key_admits_one, {_QUEUE, _ADMIN}),
        (check_locate_and_depths, {_QUEUE, _ADMIN}),
        (check_workers_heartbeat, {_ADMIN}),
        (check_result_store, {Capability.RESULTS}),
        (check_ack_stores_result_atomically, {_QUEUE, Capability.RESULTS}),
        (check_reused_id_forgets_result, {_QUEUE, Capability.RESULTS}),
        (check_abort, {_QUEUE, _ABORT, _ADMIN, Capability.RESULTS}),
        (check_abort_races_fetch, {_QUEUE, _ABORT, Capability.RESULTS}),
        (check_schedule_store, {Capability.SCHEDULES}),
        (check_event_store, {Capability.EVENTS}),
        (check_counts, {Capability.COUNTS}),
        (check_follow_publishes_with_the_settlement, {_QUEUE, _WORKFLOWS}),
        (check_barrier_fires_its_callback_once, {_QUEUE, _WORKFLOWS}),
        (check_barrier_sealed_after_its_members, {_QUEUE, _WORKFLOWS}),
        (check_failed_member_fires_the_callback_at_once, {_QUEUE, _WORKFLOWS}),
        (check_workflow_records, {_QUEUE, _WORKFLOWS}),
        (check_abort_workflow, {_QUEUE, _WORKFLOWS}),
        (check_uncharged_retry, {_QUEUE, Capability.FLOW}),
        (check_token_bucket, {Capability.FLOW}),
        (check_permits_are_leased, {Capability.FLOW}),
        (check_marks, {Capability.FLOW}),
    ]
}

CHECKS: list[Check] = list(REQUIRES)
"""Every check, for a broker with every capability."""


def checks_for(capabilities: Iterable[Capability]) -> list[Check]:
    """The checks a broker with ``capabilities`` must pass (a ``capabilities`` attribute
    of the broker class says which it has).

    >>> checks_for(MyBroker.capabilities)           # doctest: +SKIP
    """
    have = frozenset(capabilities)
    return [check for check, needs in REQUIRES.items() if needs <= have]
