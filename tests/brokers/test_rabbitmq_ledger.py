"""RabbitMQ without a result store: task records in the ledger stream (status reads and
abort), its rules on their own, the queue conformance checks, and an app with a worker."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AbstractAsyncContextManager

import pytest

from conveyor import Context, Conveyor, Depends
from conveyor.brokers.base import (
    BrokerOptions,
    Capability,
    Outgoing,
    Place,
    TaskLocation,
)
from conveyor.brokers.rabbitmq import RabbitMQBroker
from conveyor.brokers.rabbitmq.ledger import (
    ABORTED,
    CLAIMED,
    FORGOTTEN,
    PUBLISHED,
    SETTLED,
    STATUS,
    LedgerState,
)
from conveyor.errors import BrokerUnavailable, ConfigurationError, TaskNotFound
from conveyor.result import AbortOutcome, TaskStatus
from conveyor.testing import conformance
from conveyor.testing.conformance import REQUIRES, conformance_options
from tests.conftest import eventually

from .conftest import AMQP_URL, _cleanup, service_unavailable
from .test_rabbitmq import _broker as rabbit_broker
from .test_rabbitmq import factory_for


def _url() -> str:
    return f"{AMQP_URL}?prefix=test-{uuid.uuid4().hex[:12]}"


def _out(body: bytes = b"x", **kw: object) -> Outgoing:
    return Outgoing(task_id=uuid.uuid4().hex, queue="default", body=body, **kw)  # type: ignore[arg-type]


def _broker(
    url: str, options: BrokerOptions | None = None
) -> AbstractAsyncContextManager[RabbitMQBroker]:
    return rabbit_broker(url, options, records=False)  # no results=: the ledger keeps them


# -- the rules, on their own --------------------------------------------------------------


def _pub(task_id: str, reused: bool = False, key: str = "", token: int = 0) -> list[object]:
    return [PUBLISHED, task_id, reused, key, 30.0, token]


def _state() -> LedgerState:
    return LedgerState(max_age=3600.0, keep_finished=600.0)


def test_a_claim_that_lands_before_the_abort_runs_and_is_signalled() -> None:
    state = _state()
    state.apply(1.0, [_pub("t"), [CLAIMED, "t", 1, 0, 7]], mine=True)
    state.apply(2.0, [[ABORTED, "t", "n1"]], mine=True)
    assert state.claims[7].run and state.claims[7].attempt == 1
    assert state.aborts["n1"] == (AbortOutcome.SIGNALLED, 1)
    assert state.signals == ["t"]


def test_an_abort_that_lands_before_the_claim_dequeues_it() -> None:
    state = _state()
    state.apply(1.0, [_pub("t"), [ABORTED, "t", "n1"]], mine=True)
    state.apply(2.0, [[CLAIMED, "t", 1, 0, 7]], mine=True)
    assert state.aborts["n1"] == (AbortOutcome.DEQUEUED, 0)
    assert state.claims[7].run is False
    state.apply(3.0, [[ABORTED, "t", "n2"]], mine=True)
    assert state.aborts["n2"][0] is AbortOutcome.FINISHED
    state.apply(3.0, [[ABORTED, "never-published", "n3"]], mine=True)
    assert state.aborts["n3"][0] is AbortOutcome.UNKNOWN


def test_a_second_claim_of_a_running_task_counts_a_crash_and_fences_the_first() -> None:
    state = _state()
    state.apply(1.0, [_pub("t"), [CLAIMED, "t", 1, 0, 7]], mine=True)
    state.apply(2.0, [[CLAIMED, "t", 1, 1, 8]], mine=True)  # redelivered: its worker died
    assert (state.claims[8].attempt, state.claims[8].crashes) == (2, 1)
    state.apply(3.0, [[SETTLED, "t", 7, "ack", 0]], mine=False)  # the zombie's ack
    assert state.tasks["t"].place == "r"
    state.apply(4.0, [[SETTLED, "t", 8, "retry", 2]], mine=False)
    assert (state.tasks["t"].place, state.tasks["t"].copy) == ("w", 2)
    state.apply(5.0, [[CLAIMED, "t", 1, 0, 9]], mine=True)  # the retried copy 1, again
    assert state.claims[9].run is False
    state.apply(6.0, [[CLAIMED, "t", 2, 0, 10]], mine=True)
    assert state.claims[10].attempt == 3


def test_a_release_is_uncharged_and_a_finished_task_is_not_run_again() -> None:
    state = _state()
    state.apply(1.0, [_pub("t"), [CLAIMED, "t", 1, 0, 7]], mine=True)
    state.apply(2.0, [[SETTLED, "t", 7, "release", 0], [CLAIMED, "t", 1, 0, 8]], mine=True)
    assert state.claims[8].attempt == 1
    state.apply(3.0, [[SETTLED, "t", 8, "ack", 0], [CLAIMED, "t", 1, 0, 9]], mine=True)
    assert state.claims[9].run is False  # a redelivery whose ack was lost
    state.apply(4.0, [_pub("t", reused=True), [CLAIMED, "t", 2, 0, 10]], mine=True)
    assert state.claims[10].run is True  # the id was enqueued again on purpose


def test_an_uncharged_retry_gives_the_attempt_back_and_moves_to_the_new_copy() -> None:
    state = _state()
    state.apply(1.0, [_pub("t"), [CLAIMED, "t", 1, 0, 7]], mine=True)
    state.apply(2.0, [[SETTLED, "t", 7, "defer", 2]], mine=True)
    assert (state.tasks["t"].place, state.tasks["t"].copy) == ("w", 2)
    state.apply(3.0, [[CLAIMED, "t", 1, 0, 8], [CLAIMED, "t", 2, 0, 9]], mine=True)
    assert state.claims[8].run is False  # the deferred copy is stale
    assert state.claims[9].attempt == 1


def test_the_retry_of_a_publish_reported_failed_that_landed_and_ran_is_absorbed() -> None:
    """A publish whose confirm was lost is forgotten, yet its copy surfaces and runs: the
    producer's retry of that publish is the same enqueue (one absorbed), not a new run."""
    state = _state()
    state.apply(1.0, [_pub("t", reused=True, token=1), [FORGOTTEN, "t"]], mine=True)
    state.apply(2.0, [[CLAIMED, "t", 1, 0, 7], [SETTLED, "t", 7, "ack", 1]], mine=True)
    assert state.claims[7].run is True
    state.apply(3.0, [_pub("t", reused=True, token=2)], mine=True)
    assert state.admits[2] == ("t", 0)
    state.apply(4.0, [_pub("t", reused=True, token=3)], mine=True)
    assert state.admits[3][1] > 0  # enqueued again on purpose, later


def test_a_publish_forgotten_after_its_task_ran_absorbs_the_retry() -> None:
    state = _state()
    state.apply(1.0, [_pub("t", reused=True, token=1), [CLAIMED, "t", 1, 0, 7]], mine=True)
    state.apply(2.0, [[SETTLED, "t", 7, "ack", 1], [FORGOTTEN, "t"]], mine=True)
    state.apply(3.0, [_pub("t", reused=True, token=2)], mine=True)
    assert state.admits[2] == ("t", 0)


def test_finished_records_leave_a_workers_state_and_live_ones_stay() -> None:
    state = LedgerState(max_age=3600.0, keep_finished=600.0)
    state.apply(0.0, [_pub("done"), [CLAIMED, "done", 1, 0, 1]], mine=False)
    state.apply(1.0, [[SETTLED, "done", 1, "ack", 0], _pub("waiting")], mine=False)
    state.apply(700.0, [], mine=False)
    assert list(state.tasks) == ["waiting"]
    state.apply(3700.0, [], mine=False)
    assert list(state.tasks) == []  # beyond the stream's own retention


def test_a_key_admits_one_task_until_key_ttl_after_it_ended() -> None:
    state = _state()
    state.apply(1.0, [_pub("a", key="k", token=1), _pub("b", key="k", token=2)], mine=True)
    assert (state.admits[1], state.admits[2]) == (("a", 1), ("a", 0))
    state.apply(2.0, [[CLAIMED, "a", 1, 0, 7], [SETTLED, "a", 7, "ack", 0]], mine=True)
    state.apply(31.0, [_pub("c", key="k", token=3)], mine=True)
    assert state.admits[3] == ("a", 0)
    state.apply(33.0, [_pub("c", key="k", token=4)], mine=True)
    assert state.admits[4] == ("c", 1)
    state.apply(34.0, [[FORGOTTEN, "c"], _pub("d", key="k", token=5)], mine=True)
    assert state.admits[5] == ("d", 1), "a failed publish frees its key at once"


def test_statuses_and_unknown_entries() -> None:
    state = _state()
    state.apply(1.0, [[STATUS, "t", b"r"], ["?", "t"], [CLAIMED]], mine=False)
    assert state.tasks["t"].status == b"r"


# -- the broker -----------------------------------------------------------------------------


async def test_without_a_store_the_ledger_keeps_status_and_abort() -> None:
    async with _broker(_url()) as broker:
        assert broker.capabilities == {Capability.QUEUE, Capability.ABORT}
        queued, running, later = _out(b"q"), _out(b"r"), _out(b"l")
        await broker.publish([running])
        (d,) = await broker.fetch(["default"], 1, 5.0)
        await broker.publish([queued, later])
        assert await broker.locate(queued.task_id) == TaskLocation(Place.WAITING, 0)
        assert await broker.locate(running.task_id) == TaskLocation(Place.LEASED, 1)
        built: list[tuple[bytes, int]] = []
        outcome = await broker.abort(queued.task_id, lambda body, n: built.append((body, n)))
        assert outcome is AbortOutcome.DEQUEUED and built == [(b"", 0)]
        assert await broker.abort(running.task_id, lambda body, n: None) is (AbortOutcome.SIGNALLED)
        assert await broker.wait_abort_signal(5.0) == [running.task_id]
        assert await broker.abort_marks([d]) == [True]
        assert await d.ack()
        got = await broker.fetch(["default"], 5, 1.0)
        assert [x.task_id for x in got] == [later.task_id], "the aborted one is dropped"
        assert await broker.locate(queued.task_id) is None
        assert await broker.locate(running.task_id) is None
        assert await broker.abort(running.task_id, lambda body, n: None) is (AbortOutcome.FINISHED)
        await got[0].ack()


async def test_a_redelivery_after_a_dead_connection_counts_a_crash() -> None:
    url = _url()
    async with _broker(url) as first:
        item = _out(b"poison")
        await first.publish([item])
        (d,) = await first.fetch(["default"], 1, 5.0)
        assert (d.attempt, d.crashes) == (1, 0)
        session = await first.session()
        await session.connection.close()  # the worker dies: RabbitMQ requeues
        async with _broker(url) as second:
            (again,) = await second.fetch(["default"], 1, 5.0)
            assert (again.task_id, again.attempt, again.crashes) == (item.task_id, 2, 1)
            assert await again.dead_letter("poison")
            assert await second.locate(item.task_id) == TaskLocation(Place.DEAD, 2)
            (entry,) = await second.dead_letters()
            assert await second.requeue_dead([entry.id]) == 1
            (third,) = await second.fetch(["default"], 1, 5.0)
            assert third.task_id == item.task_id
            await third.ack()


async def test_another_process_reads_the_same_records() -> None:
    """A fresh reader replays the stream from its first entry."""
    url = _url()
    async with _broker(url) as writer:
        item = _out()
        await writer.publish([item])
        (d,) = await writer.fetch(["default"], 1, 5.0)
        reader = RabbitMQBroker(url, conformance_options())
        try:
            assert await reader.locate(item.task_id) == TaskLocation(Place.LEASED, 1)
            assert await reader.abort(item.task_id, lambda b, n: None) is AbortOutcome.SIGNALLED
            assert await writer.wait_abort_signal(5.0) == [item.task_id]
        finally:
            await reader.close()
        assert await d.ack()


QUEUE_CHECKS = [c for c in conformance.CHECKS if REQUIRES[c] <= {Capability.QUEUE}]


@pytest.mark.parametrize("check", QUEUE_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_queue_conformance_with_the_ledger(check: conformance.Check) -> None:
    await check(factory_for(_url(), records=False))


# -- an app and its worker ------------------------------------------------------------------


async def test_an_app_without_results_reads_statuses_and_aborts() -> None:
    url = _url()
    app = Conveyor(url, environ={}, lease=2.0, fetch_wait=0.1, grace=1.0)
    release = asyncio.Event()
    started = asyncio.Event()

    @app.task(name="ledger.slow")
    async def slow(ctx: Context = Depends()) -> int:
        await ctx.progress(0.5, "halfway")
        started.set()
        await release.wait()
        return 42

    @app.task(name="ledger.fails")
    async def fails() -> None:
        raise ValueError("no such customer")

    @app.task(name="ledger.never")
    async def never() -> None:
        raise AssertionError("an aborted task ran")

    try:
        await app.connect()
    except BrokerUnavailable as exc:
        service_unavailable(str(exc))
    try:
        queued = await never.with_options(delay=3600).kiq()
        assert (await queued.status()).status is TaskStatus.QUEUED
        assert await queued.abort() is AbortOutcome.DEQUEUED
        assert (await queued.status()).status is TaskStatus.ABORTED
        with pytest.raises(TaskNotFound):
            await app.handle("no-such-task").status()
        async with app.worker():
            handle = await slow.kiq()
            await asyncio.wait_for(started.wait(), 10)
            state = await handle.status()
            assert (state.status, state.progress, state.progress_message) == (
                TaskStatus.RUNNING,
                0.5,
                "halfway",
            )
            assert await handle.abort() is AbortOutcome.SIGNALLED
            aborted = await eventually(
                lambda: _status_is(handle, TaskStatus.ABORTED), what="the running task aborted"
            )
            assert aborted.attempts == 1
            failed = await fails.kiq()
            state = await eventually(lambda: _status_is(failed, TaskStatus.FAILED))
            assert state.result is not None and state.result.error is not None
            assert "no such customer" in state.result.error.message
            done = await slow.kiq()
            release.set()
            await eventually(lambda: _status_is(done, TaskStatus.SUCCEEDED))
        with pytest.raises(ConfigurationError, match="results="):
            await done.wait_result(timeout=1)
        # a new app (another process) replays the ledger and sees the same
        async with Conveyor(url, environ={}) as other:
            assert (await other.handle(done.task_id).status()).status is TaskStatus.SUCCEEDED
            assert (await other.handle(queued.task_id).status()).status is TaskStatus.ABORTED
    finally:
        await app.close()
        await _cleanup(url)


async def _status_is(handle: object, status: TaskStatus) -> object:
    state = await handle.status()  # type: ignore[attr-defined]
    return state if state.status is status else None


async def test_without_a_store_flow_limits_are_refused_and_unique_and_expiry_work() -> None:
    """The ledger has no flow control (docs/flow-control.md): a worker for rate- or
    concurrency-limited tasks refuses to start, naming the task, and a debounced enqueue
    is refused before anything is published. ``unique`` and ``expires`` need no flow
    state, and work."""
    url = _url()
    limited_app = Conveyor(url, environ={}, lease=2.0, fetch_wait=0.1)

    @limited_app.task(name="ledger.limited", rate_limit="5/s")
    async def limited() -> None:
        raise AssertionError("ran")

    @limited_app.task(name="ledger.debounced", debounce=0.2)
    async def debounced() -> None:
        raise AssertionError("ran")

    app = Conveyor(url, environ={}, lease=2.0, fetch_wait=0.1)
    runs: list[str] = []

    @app.task(name="ledger.once", unique=True, expires=0.3)
    async def once(tag: str) -> str:
        runs.append(tag)
        return tag

    try:
        await app.connect()
        await limited_app.connect()
    except BrokerUnavailable as exc:
        service_unavailable(str(exc))
    try:
        assert Capability.FLOW not in app.broker.capabilities
        with pytest.raises(ConfigurationError, match=r"'ledger\.limited'.*flow control"):
            async with limited_app.worker():
                pass
        with pytest.raises(ConfigurationError, match=r"'ledger\.debounced' is debounced"):
            await debounced.kiq()
        late = await once.kiq("late")
        assert (await once.kiq("late")).task_id == late.task_id  # unique while queued
        await asyncio.sleep(0.5)  # past its expiry
        async with app.worker():
            await eventually(lambda: _status_is(late, TaskStatus.EXPIRED), what="expired")
            on_time = await once.kiq("on time")
            await eventually(lambda: _status_is(on_time, TaskStatus.SUCCEEDED), what="ran")
        assert runs == ["on time"]
        assert await app.broker.fetch(["default"], 5, 0.5) == []  # no debounced task sent
    finally:
        await limited_app.close()
        await app.close()
        await _cleanup(url)
