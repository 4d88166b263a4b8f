"""Workflows on memory://: how chains, groups and chords are built, checked, sent, read,
and aborted (the broker-level promises are in conveyor.testing.conformance, the
worker-level ones in conveyor.testing.behaviour, run on every broker)."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from conveyor import (
    ConfigurationError,
    Conveyor,
    GroupHandle,
    Result,
    TaskFailed,
    TaskNotFound,
    TaskStatus,
    WorkflowHandle,
    chain,
    chord,
    group,
)
from conveyor.brokers.base import Capability, Outgoing
from conveyor.message import decode_message
from conveyor.result import AbortOutcome
from conveyor.workflow.plan import GATHER_TASK


@pytest.fixture
async def app() -> AsyncIterator[Conveyor]:
    app = Conveyor("memory://", environ={}, log_tasks=False, fetch_wait=0.05)
    async with app:
        yield app


def _tasks(app: Conveyor) -> Any:
    @app.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="double")
    async def double(x: int) -> int:
        return 2 * x

    @app.task(name="total")
    async def total(xs: list[int]) -> int:
        return sum(xs)

    @app.task(name="boom")
    async def boom(x: int) -> int:
        raise ValueError(f"bad {x}")

    @app.task(name="noargs")
    async def noargs() -> str:
        return "ok"

    return add, double, total, boom, noargs


# -- building -----------------------------------------------------------------------------


def test_signatures_read_as_they_were_made(app: Conveyor) -> None:
    add, double, *_ = _tasks(app)
    assert repr(add.s(1, b=2)) == "add.s(1, b=2)"
    assert repr(double.si(3)) == "double.si(3)"
    flow = add.s(1, 2) | double.s() | double.s()
    assert len(flow.steps) == 3  # a | b | c is one chain of three
    assert repr(chain(add.s(1, 2))) == "chain(add.s(1, 2))"


def test_parts_must_be_signatures(app: Conveyor) -> None:
    add, *_ = _tasks(app)
    with pytest.raises(TypeError, match=r"use task\.s\(\.\.\.\)"):
        chain(add)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="at least one step"):
        chain()
    with pytest.raises(TypeError, match="takes signatures"):
        list(group([add.s(1, 2), 3]).members())  # type: ignore[list-item]


def test_workflow_calls_refuse_the_options_a_workflow_gives(app: Conveyor) -> None:
    add, *_ = _tasks(app)
    with pytest.raises(ValueError, match="cannot have delay, key"):
        add.with_options(delay=5, key="k").s(1, 2)
    assert add.with_options(queue="fast", priority=3).s(1, 2).options is not None


async def test_arguments_are_checked_with_the_value_a_call_receives(app: Conveyor) -> None:
    add, double, _, _, noargs = _tasks(app)
    with pytest.raises(TypeError, match="'add': too many positional arguments"):
        await chain(double.s(1), add.s(1, 2)).kiq()  # receives a value, and has two more
    with pytest.raises(TypeError, match="argument 'b' must be int"):
        await chain(double.s(1), add.s("x")).kiq()
    with pytest.raises(TypeError, match="takes no positional argument to receive"):
        await chain(double.s(1), noargs.s()).kiq()
    await chain(double.s(1), noargs.si()).kiq()  # .si(): receives nothing


async def test_a_broker_without_workflows_refuses_them(app: Conveyor) -> None:
    add, *_ = _tasks(app)
    app.broker.capabilities = frozenset({Capability.QUEUE, Capability.RESULTS})  # type: ignore[misc]
    with pytest.raises(ConfigurationError, match="cannot run workflows"):
        await chain(add.s(1, 2)).kiq()
    with pytest.raises(ConfigurationError, match="keeps no workflows"):
        await app.workflow("w").status()


# -- running ------------------------------------------------------------------------------


async def test_chain_group_and_chord_results(app: Conveyor) -> None:
    add, double, total, *_ = _tasks(app)
    async with app.worker(concurrency=10):
        flow = await chain(add.s(1, 2), double.s(), add.s(10)).kiq()
        assert isinstance(flow, WorkflowHandle) and await flow.get(timeout=5) == 16
        members = await group(double.s(i) for i in range(10)).kiq()
        assert isinstance(members, GroupHandle)
        assert await members.wait_results(timeout=5) == [2 * i for i in range(10)]
        fan_in = await chord((double.s(i) for i in range(100)), total.s()).kiq()
        assert await fan_in.get(timeout=5) == 9900
        # a group inside a chain receives the value in each member, and passes a list on
        nested = await chain(add.s(1, 1), group(double.s(), add.s(5)), total.s()).kiq()
        assert await nested.get(timeout=5) == 4 + 7
        chains = await group(chain(add.s(1, 1), double.s()), chain(add.s(2, 2), double.s())).kiq()
        assert await chains.wait_results(timeout=5) == [4, 8]
        groups = await group(group(double.s(1), double.s(2)), double.s(3)).kiq()
        assert await groups.wait_results(timeout=5) == [[2, 4], 6]
        two_groups = await chain(group(double.s(1), double.s(2)), group(total.s(), total.s())).kiq()
        assert await two_groups.get(timeout=5) == [6, 6]


async def test_empty_groups_finish_at_once(app: Conveyor) -> None:
    _, double, total, *_ = _tasks(app)
    async with app.worker():
        empty = await chord([], total.s()).kiq()
        assert await empty.get(timeout=5) == 0
        inner = await chain(double.s(1), group(), total.s()).kiq()
        assert await inner.get(timeout=5) == 0


async def test_group_results_convert_to_the_members_return_type(app: Conveyor) -> None:
    @app.task(name="when")
    async def when(day: int) -> datetime.date:
        return datetime.date(2024, 1, day)

    async with app.worker():
        days = await group(when.s(d) for d in (1, 2)).kiq()
        assert await days.wait_results(timeout=5) == [
            datetime.date(2024, 1, 1),
            datetime.date(2024, 1, 2),
        ]


async def test_partial_chord_gets_every_members_result(app: Conveyor) -> None:
    _, double, _, boom, _ = _tasks(app)
    seen: list[list[Result[float]]] = []

    @app.task(name="summary")
    async def summary(results: list[Result[float]]) -> int:
        seen.append(results)
        return sum(not r.is_err for r in results)

    async with app.worker():
        handle = await chord([double.s(1), boom.s(2)], summary.s(), partial=True).kiq()
        assert await handle.get(timeout=5) == 1
    (results,) = seen
    assert results[0].return_value == 2.0 and isinstance(results[0].return_value, float)
    assert results[1].error is not None and results[1].error.message == "bad 2"


async def test_a_failed_step_fails_its_workflow_at_once(app: Conveyor) -> None:
    add, double, total, boom, _ = _tasks(app)
    async with app.worker():
        flow = await chain(add.s(1, 1), boom.s(), double.s(), double.s()).kiq()
        with pytest.raises(TaskFailed, match=r"\.1 \(boom\) failed: ValueError: bad 2"):
            await flow.get(timeout=5)
        state = await flow.status()
        assert (state.status, state.failed_task) == ("failed", f"{flow.workflow_id}.1")
        # the final task's result says the workflow failed; the one between never ran
        assert [t.status for t in state.tasks] == ["succeeded", "failed", "skipped", "failed"]
        assert state.error is not None and state.error.traceback  # the failed task's
        members = await group(double.s(1), boom.s(2)).kiq()
        with pytest.raises(TaskFailed, match="WorkflowFailed"):
            await members.wait_results(timeout=5)
        # a failure deep in nested groups names the task that failed first
        nested = await chord([group(double.s(1), boom.s(7))], total.s()).kiq()
        result = await nested.wait_result(timeout=5)
        assert (
            result.error is not None
            and f"{nested.workflow_id}.0.0.1 (boom)" in result.error.message
        )
        assert (await nested.status()).failed_task == f"{nested.workflow_id}.0.0.1"


async def test_status_lists_tasks_and_groups(app: Conveyor) -> None:
    _, double, total, *_ = _tasks(app)
    flow = await chord((double.s(i) for i in range(3)), total.s()).kiq()
    state = await flow.status()
    assert (state.status, state.kind, state.name) == ("running", "chord", "[double x3] → total")
    assert [(t.task, t.status) for t in state.tasks] == [("double", "queued")] * 3 + [
        ("total", "pending")
    ]
    assert [(g.size, g.finished) for g in state.groups] == [(3, 0)]
    async with app.worker():
        await flow.get(timeout=5)
    state = await app.workflow(flow.workflow_id).status(tasks=2)
    assert state.status == "succeeded" and state.more_tasks == 2
    assert await app.workflow(flow.workflow_id).get(timeout=1) == 6
    with pytest.raises(TaskNotFound, match="unknown workflow id"):
        await app.workflow("nope").status()


async def test_a_group_of_ten_thousand_is_sent_in_slices(app: Conveyor) -> None:
    """The producer holds one slice of encoded members at a time (1,000), and the members
    come from a generator read as it goes."""
    _, double, total, *_ = _tasks(app)
    batches: list[int] = []
    publish = app.broker.publish

    async def counting(batch: list[Outgoing]) -> list[str]:
        batches.append(len(batch))
        return await publish(batch)

    app.broker.publish = counting  # type: ignore[method-assign]
    taken: list[int] = []

    def members() -> Iterator[Any]:
        for i in range(10_000):
            taken.append(i)
            yield double.s(i)

    handle = await chord(members(), total.s()).kiq()
    assert max(batches) == 1000 and sum(batches) == 10_000
    async with app.worker(concurrency=100):
        assert await handle.get(timeout=60) == 2 * sum(range(10_000))


async def test_abort_a_single_queued_member_fails_its_chord(app: Conveyor) -> None:
    _, double, total, *_ = _tasks(app)
    flow = await chord([double.s(1), double.s(2)], total.s()).kiq()
    member = app.handle(f"{flow.workflow_id}.0.1")
    assert await member.abort() is AbortOutcome.DEQUEUED
    async with app.worker():
        result = await flow.wait_result(timeout=5)
    assert result.status is TaskStatus.FAILED and result.error is not None
    assert "aborted" in result.error.message


async def test_abort_before_a_worker_runs_anything(app: Conveyor) -> None:
    add, double, *_ = _tasks(app)
    flow = await chain(add.s(1, 2), double.s()).kiq()
    assert await flow.abort() == 1
    assert (await flow.wait_result(timeout=1)).status is TaskStatus.ABORTED
    assert (await flow.status()).status == "aborted"
    async with app.worker():
        await asyncio.sleep(0.1)  # sleep: nothing may run; give the worker a chance to
    assert await app.broker.locate(f"{flow.workflow_id}.1") is None


async def test_messages_name_their_place_in_the_workflow(app: Conveyor) -> None:
    """Task ids are the workflow id and the path to the call; the gather task of a group
    is the group's id."""
    add, double, *_ = _tasks(app)
    handle = await group(add.s(1, 2), double.s(3)).kiq()
    assert handle.task_id == handle.workflow_id
    fetched = await app.broker.fetch(["default"], 10, 0.1)
    assert sorted(d.task_id for d in fetched) == [f"{handle.workflow_id}.{i}" for i in (0, 1)]
    message = decode_message(fetched[0].body)
    assert message.link is not None and message.link.join is not None
    state = await app.broker.barrier(handle.workflow_id)
    assert state is not None and state.size == 2
    assert GATHER_TASK == "conveyor.gather"


def test_workflows_are_sent_from_synchronous_code() -> None:
    app = Conveyor("memory://", environ={}, log_tasks=False, fetch_wait=0.05)
    _, double, total, *_ = _tasks(app)

    async def with_a_worker() -> list[int]:
        async with app, app.worker():
            flow = await asyncio.to_thread(chain(double.s(1), double.s()).kiq_sync)
            members = await asyncio.to_thread(group(double.s(i) for i in range(3)).kiq_sync)
            fan_in = await asyncio.to_thread(
                chord((double.s(i) for i in range(3)), total.s()).kiq_sync
            )
            return [
                await asyncio.to_thread(flow.get_sync, 5),
                sum(await asyncio.to_thread(members.wait_results_sync, 5)),
                await asyncio.to_thread(fan_in.get_sync, 5),
            ]

    assert asyncio.run(with_a_worker()) == [4, 6, 6]


async def test_a_value_too_large_for_the_next_step_fails_its_step() -> None:
    """What follows a task travels in a message: a value that would make it too large
    fails the step that returned it (not retried), and so the workflow, naming the limit."""
    app = Conveyor("memory://", environ={}, log_tasks=False, max_payload_bytes=2000)
    ran: list[int] = []

    @app.task(name="big", retries=3)
    async def big() -> str:
        ran.append(1)
        return "x" * 5000

    @app.task(name="size")
    async def size(text: str) -> int:
        return len(text)

    async with app, app.worker():
        flow = await chain(big.s(), size.s()).kiq()
        result = await flow.wait_result(timeout=5)
        first = await app.handle(f"{flow.workflow_id}.0").result()
    assert ran == [1]
    assert result.error is not None and "max_payload_bytes" in result.error.message
    assert first.error is not None and "cannot be sent" in first.error.message


async def test_a_callback_whose_group_expired_fails_saying_so(app: Conveyor) -> None:
    _, double, _, _, _ = _tasks(app)

    @app.task(name="later", queue="later")
    async def later(values: list[int]) -> int:
        return sum(values)

    flow = await chord([double.s(1), double.s(2)], later.s()).kiq()
    async with app.worker(queues=["default"]):  # the members run; the callback waits
        state = await app.broker.barrier(f"{flow.workflow_id}.0")
        while state is None or not state.fired:
            await asyncio.sleep(0.01)  # sleep: the members finish in this worker
            state = await app.broker.barrier(f"{flow.workflow_id}.0")
    app.broker._barriers.clear()  # type: ignore[attr-defined]  # as workflow_ttl would
    async with app.worker(queues=["later"]):
        result = await flow.wait_result(timeout=5)
    assert result.error is not None and "are gone from the broker" in result.error.message
