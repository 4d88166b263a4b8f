"""The behaviour suite: what a real worker must be able to do on a broker, as public checks.

The conformance suite (``conveyor.testing.conformance``) drives a broker by hand; these
checks run ``app.worker()`` on it, as production does, and check what users see: results,
statuses, attempts, what ran and how often. A broker proves itself with both::

    import pytest
    from conveyor.testing.behaviour import BEHAVIOUR_CHECKS, AppFactory, BehaviourCheck

    @pytest.mark.parametrize("check", BEHAVIOUR_CHECKS, ids=lambda c: c.__name__)
    async def test_my_broker(check: BehaviourCheck, my_app_factory: AppFactory) -> None:
        await check(my_app_factory)

(or let ``conveyor.testing.plugin`` generate both suites from one fixture).

An :class:`AppFactory` opens a connected :class:`~conveyor.Conveyor` on a fresh, empty
broker, built with the settings a check passes (``async with factory(**settings) as
app``); :func:`app_factory` makes one from a URL. Each check calls its factory once and
registers its own tasks. Checks use short real durations (leases under a second), because
server brokers keep leases by their own clock, not an injected one.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, cast

from conveyor.app import Conveyor
from conveyor.brokers.base import (
    Broker,
    Capability,
    Delivery,
    LeaseKeeper,
    Place,
    TaskLocation,
    Workflows,
)
from conveyor.deps import Context, Depends
from conveyor.result import AbortOutcome, TaskStatus
from conveyor.retry import fixed
from conveyor.workflow import chain, chord, group

__all__ = [
    "BEHAVIOUR_CHECKS",
    "BEHAVIOUR_REQUIRES",
    "LEASE",
    "AppFactory",
    "BehaviourCheck",
    "app_factory",
    "behaviour_checks_for",
    "behaviour_settings",
    "max_in_window",
]

LEASE = 0.8
"""The lease of every check, in seconds: short, yet three renewals (one every lease/3) a
loaded machine still makes in time."""


class AppFactory(Protocol):
    """Opens a connected app on a fresh, empty broker: ``async with factory(**settings)``.
    The keywords are :class:`~conveyor.settings.Settings` fields."""

    def __call__(self, **settings: Any) -> AbstractAsyncContextManager[Conveyor]: ...


BehaviourCheck = Callable[[AppFactory], Awaitable[None]]


def behaviour_settings(**changes: Any) -> dict[str, Any]:
    """The settings the checks use: a :data:`LEASE` lease and reaps, fetch waits and
    heartbeats of a fraction of it, so fault paths run in about a second."""
    settings: dict[str, Any] = {
        "lease": LEASE,
        "reap_interval": 0.05,
        "fetch_wait": 0.05,
        "heartbeat_interval": 0.2,
        "abort_check_interval": 0.2,
        "grace": 1.0,
    }
    settings.update(changes)
    return settings


def app_factory(url: str) -> AppFactory:
    """An :class:`AppFactory` for the broker at ``url`` (its scheme registered with
    :func:`~conveyor.brokers.register_broker`). Each call builds ``Conveyor(url, ...)``
    with no environment read; it is fresh and empty only if a new broker at ``url`` is:
    ``memory://`` is, a file or a server needs a new path or namespace per test.

    >>> async with app_factory("memory://")(**behaviour_settings()) as app:  # doctest: +SKIP
    ...     assert app.is_connected
    """

    @asynccontextmanager
    async def open_app(**settings: Any) -> AsyncIterator[Conveyor]:
        app = Conveyor(url, environ={}, **settings)
        await app.connect()
        try:
            yield app
        finally:
            await app.close()

    return open_app


async def _until(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll ``check()`` (plain or async) until it is truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.01)  # a broker's state announces nothing: poll it


async def _gone(broker: Broker, task_id: str) -> bool:
    """The broker no longer holds the task: nothing waits, runs or is dead."""
    return await broker.locate(task_id) is None


async def _die(broker: Broker, queue: str) -> Delivery:
    """A worker claims the next task of ``queue`` and dies: its lease ends unsettled, and a
    reaper takes it back."""
    (delivery,) = await broker.fetch([queue], 1, 5.0)
    assert await delivery.extend_lease(0.0), "a fresh lease could not be ended"
    await _until(broker.reap, "the reaper to take back a dead worker's task")
    return delivery


def _reap_elsewhere(broker: Broker) -> int:
    """What another process's reaper moves now, on its own connection and event loop.
    It blocks the calling thread until done."""

    async def reap() -> int:
        other = broker.clone()
        if other is broker:  # a thread-safe broker shares itself
            return await broker.reap()
        await other.connect()
        try:
            return await other.reap()
        finally:
            await other.close()

    moved: list[int] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            moved.append(asyncio.run(reap()))
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run, name="conveyor-behaviour-reaper")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return moved[0]


class _PausingKeeper:
    """A lease keeper that renews nothing for the deliveries ``paused`` picks: for them, it
    is the lease thread of a paused process (which renews nothing, and notices nothing)."""

    def __init__(self, keeper: LeaseKeeper, paused: Callable[[Delivery], bool]) -> None:
        self._keeper = keeper
        self._paused = paused

    def renew(self, deliveries: Sequence[Delivery], seconds: float) -> list[bool]:
        live = [d for d in deliveries if not self._paused(d)]
        renewed = iter(self._keeper.renew(live, seconds) if live else [])
        return [True if self._paused(d) else next(renewed) for d in deliveries]

    def close(self) -> None:
        self._keeper.close()


def _pause_lease_renewal(broker: Broker, paused: Callable[[Delivery], bool]) -> Callable[[], None]:
    """Workers started from now on renew no lease of the deliveries ``paused`` picks;
    returns the undo."""
    keeper_of = broker.lease_keeper

    def pausing() -> LeaseKeeper:
        return _PausingKeeper(keeper_of(), paused)

    broker.__dict__["lease_keeper"] = pausing  # shadows the method on this instance only
    return lambda: broker.__dict__.pop("lease_keeper", None)


# -- the checks ---------------------------------------------------------------------------


async def check_retries_then_dead_letter(factory: AppFactory) -> None:
    """A task that always raises runs ``retries + 1`` times, then ends ``failed`` and is
    dead-lettered (``locate`` says dead) with the reason, which a broker with ``ADMIN``
    shows in its dead-letter entry."""
    async with factory(**behaviour_settings()) as app:
        calls: list[int] = []

        @app.task(name="behaviour.flaky", retries=2, backoff=fixed(0.01))
        async def flaky(ctx: Context = Depends()) -> None:
            calls.append(ctx.attempt)
            raise ValueError(f"attempt {ctx.attempt}")

        async with app.worker():
            handle = await flaky.kiq()
            result = await handle.wait_result(timeout=10)
        assert calls == [1, 2, 3]
        assert (result.status, result.attempts) == (TaskStatus.FAILED, 3)
        assert result.error is not None
        assert (result.error.type, result.error.message) == ("ValueError", "attempt 3")
        assert await app.broker.locate(handle.task_id) == TaskLocation(Place.DEAD, 3)
        assert (await handle.status()).status is TaskStatus.FAILED
        if Capability.ADMIN in app.broker.capabilities:
            (entry,) = await app.broker.dead_letters()
            assert (entry.id, entry.attempts) == (handle.task_id, 3)
            assert "failed after 3 attempt(s): ValueError: attempt 3" in entry.reason


async def check_abort_queued_task_never_runs(factory: AppFactory) -> None:
    """An aborted queued task is removed with its ``aborted`` result (attempts 0) and never
    runs, while the task queued after it does; aborting it again finds it finished."""
    async with factory(**behaviour_settings()) as app:
        ran: list[str] = []

        @app.task(name="behaviour.job", retries=3)
        async def job(name: str) -> str:
            ran.append(name)
            return name

        handle = await job.kiq("aborted")
        assert (await handle.status()).status is TaskStatus.QUEUED
        assert await handle.abort() is AbortOutcome.DEQUEUED
        result = await handle.wait_result(timeout=1)  # stored by the abort itself
        assert (result.status, result.attempts) == (TaskStatus.ABORTED, 0)
        assert await _gone(app.broker, handle.task_id)
        witness = await job.kiq("witness")
        async with app.worker():
            assert await witness.get(timeout=10) == "witness"
        assert ran == ["witness"]
        assert (await handle.status()).status is TaskStatus.ABORTED
        assert await handle.abort() is AbortOutcome.FINISHED


async def check_abort_running_task_is_cancelled(factory: AppFactory) -> None:
    """An aborted running task is cancelled in its worker by the broker's abort signal
    (the periodic look at abort marks is a minute away), ends ``aborted`` after attempt 1,
    and is not retried."""
    async with factory(**behaviour_settings(abort_check_interval=60.0)) as app:
        started = asyncio.Event()
        seen: list[str] = []

        @app.task(name="behaviour.crunch", retries=3)
        async def crunch(ctx: Context = Depends()) -> str:
            seen.append(f"start {ctx.attempt}")
            started.set()
            try:
                await asyncio.Event().wait()  # runs until cancelled
            except asyncio.CancelledError:
                seen.append(f"cancelled, abort_requested={ctx.abort_requested}")
                raise
            return "never"

        async with app.worker():
            handle = await crunch.kiq()
            await asyncio.wait_for(started.wait(), 10)
            assert await handle.abort() is AbortOutcome.SIGNALLED
            result = await handle.wait_result(timeout=10)
            await _until(lambda: _gone(app.broker, handle.task_id), "the task to end")
        assert seen == ["start 1", "cancelled, abort_requested=True"]
        assert (result.status, result.attempts) == (TaskStatus.ABORTED, 1)
        assert (await handle.status()).status is TaskStatus.ABORTED
        assert await handle.abort() is AbortOutcome.FINISHED


async def check_long_task_keeps_its_lease(factory: AppFactory) -> None:
    """A task that runs for over three leases runs once: its worker's lease thread renews
    the lease through ``lease_keeper()``, even while the task blocks the event loop and
    another process's reaper looks for expired leases."""
    async with factory(**behaviour_settings()) as app:
        broker = app.broker
        runs: list[int] = []
        reaped: list[int] = []

        @app.task(name="behaviour.long")
        async def long(ctx: Context = Depends()) -> str:
            runs.append(ctx.attempt)
            await asyncio.sleep(2 * LEASE)  # the worker's own reaper runs meanwhile
            # the event loop is blocked: only the lease thread keeps the lease
            threading.Event().wait(1.5 * LEASE)
            reaped.append(_reap_elsewhere(broker))
            return "done"

        async with app.worker(concurrency=2):  # a slot free to run it again, wrongly
            handle = await long.kiq()
            result = await handle.wait_result(timeout=30)
        assert (result.status, result.return_value, result.attempts) == (
            TaskStatus.SUCCEEDED,
            "done",
            1,
        )
        assert runs == [1]
        assert reaped == [0], "another reaper found the renewed lease expired"


async def check_zombie_cannot_settle(factory: AppFactory) -> None:
    """A worker that lost its lease (its lease thread paused) cannot settle: attempt 1's
    body, finishing while attempt 2 runs after the lease expired, is refused (no result,
    the task still attempt 2's), and attempt 2's result is the one kept."""
    async with factory(**behaviour_settings()) as app:
        resume, second_started, second_may_end = asyncio.Event(), asyncio.Event(), asyncio.Event()
        finished: list[int] = []

        @app.task(name="behaviour.stuck", retries=3)
        async def stuck(ctx: Context = Depends()) -> str:
            if ctx.attempt == 1:
                await resume.wait()  # paused past its lease
            else:
                second_started.set()
                await second_may_end.wait()
            finished.append(ctx.attempt)
            return f"attempt {ctx.attempt}"

        undo = _pause_lease_renewal(app.broker, lambda delivery: delivery.attempt == 1)
        try:
            async with app.worker(concurrency=2) as worker:
                handle = await stuck.kiq()
                # the lease of attempt 1 expires; the worker's reaper and fetch start attempt 2
                await asyncio.wait_for(second_started.wait(), 10)
                resume.set()
                await _until(lambda: worker.processed == 1, "the zombie to try to settle")
                assert finished == [1]
                assert await app.result_store.get(handle.task_id) is None, (
                    "a zombie's late result was stored"
                )
                assert await app.broker.locate(handle.task_id) == TaskLocation(Place.LEASED, 2)
                second_may_end.set()
                result = await handle.wait_result(timeout=10)
        finally:
            undo()
        assert finished == [1, 2]
        assert (result.status, result.return_value, result.attempts) == (
            TaskStatus.SUCCEEDED,
            "attempt 2",
            2,
        )
        assert await _gone(app.broker, handle.task_id)


async def check_poison_task_is_dead_lettered(factory: AppFactory) -> None:
    """A task whose worker dies on each attempt is dead-lettered without running again
    after exactly max(retries + 1, ``poison_after``) started attempts; one that died one
    time fewer still runs."""
    async with factory(**behaviour_settings(poison_after=3)) as app:
        ran: list[str] = []

        # retries=1: 2 attempts; poison_after=3 makes the limit 3 started attempts
        @app.task(name="behaviour.crashes", retries=1)
        async def crashes(name: str) -> None:
            ran.append(name)

        survivor = await crashes.kiq("survivor")
        poison = await crashes.with_options(queue="behaviour-poison").kiq("poison")
        for _ in range(2):
            await _die(app.broker, "default")
        for _ in range(3):
            await _die(app.broker, "behaviour-poison")
        async with app.worker(queues=["default", "behaviour-poison"]):
            dead = await poison.wait_result(timeout=10)
            lived = await survivor.wait_result(timeout=10)
        assert ran == ["survivor"]
        assert (lived.status, lived.attempts) == (TaskStatus.SUCCEEDED, 3)
        assert dead.status is TaskStatus.DEAD
        assert await app.broker.locate(poison.task_id) == TaskLocation(Place.DEAD, 4)
        if Capability.ADMIN in app.broker.capabilities:
            (entry,) = await app.broker.dead_letters()
            assert entry.id == poison.task_id
            assert entry.reason.startswith(
                "poison: attempt 4 exceeds the limit of 3 started attempts"
            ), entry.reason


async def check_crashes_are_counted(factory: AppFactory) -> None:
    """``Delivery.crashes`` counts the attempts in a row whose lease expired unsettled (a
    retry ends the row), and a worker runs a task that crashed twice alone: no other task
    of its worker runs beside it."""
    # five started attempts: poison_after=10 keeps the fifth from counting as poison
    async with factory(**behaviour_settings(poison_after=10)) as app:
        broker = app.broker
        running: set[str] = set()
        beside: dict[str, set[str]] = {}

        @app.task(name="behaviour.watched")
        async def watched(name: str) -> None:
            beside[name] = set(running)
            running.add(name)
            await asyncio.sleep(0.1)  # long enough for the others to start beside it
            beside[name] |= running - {name}
            running.discard(name)

        suspect = await watched.kiq("suspect")
        first = await _die(broker, "default")
        (second,) = await broker.fetch(["default"], 1, 5.0)
        assert await second.retry(0.0)  # settled: the row of crashes ends
        third = await _die(broker, "default")
        fourth = await _die(broker, "default")
        assert [d.crashes for d in (first, second, third, fourth)] == [0, 1, 0, 1]
        others = [await watched.kiq(f"other-{n}") for n in range(3)]
        async with app.worker(concurrency=4):
            for handle in [suspect, *others]:
                result = await handle.wait_result(timeout=10)
                assert result.status is TaskStatus.SUCCEEDED, result
        assert (await suspect.result()).attempts == 5
        assert beside["suspect"] == set(), f"ran beside {beside['suspect']}"


async def check_graceful_stop_releases_uncharged(factory: AppFactory) -> None:
    """A stopping worker lets a task finish within its grace, then cancels the one still
    running and releases it uncharged: it waits again with 0 attempts, and runs next time
    as attempt 1."""
    async with factory(**behaviour_settings()) as app:
        attempts: list[tuple[str, int]] = []
        finish_short = asyncio.Event()

        @app.task(name="behaviour.job")
        async def job(kind: str, ctx: Context = Depends()) -> str:
            attempts.append((kind, ctx.attempt))
            if kind == "short":
                await finish_short.wait()
            elif attempts.count(("long", 1)) == 1:
                await asyncio.Event().wait()  # the first run never ends by itself
            return kind

        short, long = await job.kiq("short"), await job.kiq("long")
        worker = app.worker(concurrency=2, grace=0.3)
        await worker.start()
        try:
            await _until(lambda: len(attempts) == 2, "both tasks to start")
            worker.request_stop()  # nothing more is fetched; what runs has its grace
            finish_short.set()
        finally:
            await asyncio.wait_for(worker.stop(), 10)
        assert await short.get(timeout=1) == "short"
        assert await app.broker.locate(long.task_id) == TaskLocation(Place.WAITING, 0)
        assert (await long.status()).status is TaskStatus.QUEUED
        async with app.worker():
            result = await long.wait_result(timeout=10)
        assert (result.return_value, result.attempts) == ("long", 1)
        assert sorted(attempts) == [("long", 1), ("long", 1), ("short", 1)]


# -- workflows ----------------------------------------------------------------------------


async def check_chain_passes_each_result_on(factory: AppFactory) -> None:
    """A chain runs its steps in order, each receiving the previous result as its first
    argument (``.si()`` none); the workflow's result is the last step's, and its status
    lists its steps as succeeded."""
    async with factory(**behaviour_settings()) as app:
        calls: list[tuple[str, tuple[Any, ...]]] = []

        @app.task(name="behaviour.add")
        async def add(a: int, b: int) -> int:
            calls.append(("add", (a, b)))
            return a + b

        @app.task(name="behaviour.tag")
        async def tag(label: str) -> str:
            calls.append(("tag", (label,)))
            return label

        async with app.worker(concurrency=4):
            handle = await chain(add.s(1, 2), add.s(10), tag.si("end"), tag.s()).kiq()
            # tag.s() receives "end": its own args are empty
            result = await handle.wait_result(timeout=10)
        assert (result.status, result.return_value) == (TaskStatus.SUCCEEDED, "end")
        assert calls == [("add", (1, 2)), ("add", (3, 10)), ("tag", ("end",)), ("tag", ("end",))]
        state = await handle.status()
        assert state.status == "succeeded"
        assert [t.status for t in state.tasks] == ["succeeded"] * 4


async def check_chord_gathers_results_in_member_order(factory: AppFactory) -> None:
    """A chord's callback runs once, after its last member, with the members' results in
    member order (whatever order they finished in); a group's handle gives them the same
    way; a group inside a chain receives the previous result in each member."""
    async with factory(**behaviour_settings()) as app:
        runs: list[list[int]] = []

        @app.task(name="behaviour.square")
        async def square(x: int) -> int:
            await asyncio.sleep((20 - x) * 0.005)  # the last members finish first
            return x * x

        @app.task(name="behaviour.collect")
        async def collect(values: list[int]) -> int:
            runs.append(values)
            return sum(values)

        @app.task(name="behaviour.offset")
        async def offset(base: int, by: int) -> int:
            return base + by

        async with app.worker(concurrency=20):
            handle = await chord((square.s(x) for x in range(20)), collect.s()).kiq()
            assert await handle.get(timeout=20) == sum(x * x for x in range(20))
            group_handle = await group(square.s(x) for x in range(5)).kiq()
            assert await group_handle.wait_results(timeout=20) == [0, 1, 4, 9, 16]
            nested = await chain(square.s(3), group(offset.s(1), offset.s(2)), collect.s()).kiq()
            assert await nested.get(timeout=20) == 10 + 11
        assert runs[0] == [x * x for x in range(20)] and len(runs) == 2
        state = await handle.status()
        assert state.status == "succeeded"
        assert [(g.size, g.finished, g.failed) for g in state.groups] == [(20, 20, 0)]


async def check_failed_member_fails_the_chord(factory: AppFactory) -> None:
    """A member that fails for good (dead-lettered) fails its chord at once: the callback
    never runs, the chord's result is failed and names the member and its error, and the
    workflow's status says which task failed; with ``partial=True`` the callback runs
    with every member's result."""
    async with factory(**behaviour_settings()) as app:
        callback_runs: list[Any] = []
        release = asyncio.Event()

        @app.task(name="behaviour.member")
        async def member(x: int) -> int:
            if x == 1:
                raise ValueError("bad member")
            if x == 2:
                await release.wait()  # still running when the chord fails
            return x

        @app.task(name="behaviour.callback")
        async def callback(values: list[Any]) -> str:
            callback_runs.append(values)
            return "ran"

        async with app.worker(concurrency=4):
            handle = await chord([member.s(0), member.s(1), member.s(2)], callback.s()).kiq()
            result = await handle.wait_result(timeout=10)
            release.set()
            assert result.status is TaskStatus.FAILED and result.error is not None
            assert result.error.type == "conveyor.WorkflowFailed"
            assert f"{handle.workflow_id}.0.1" in result.error.message
            assert "ValueError: bad member" in result.error.message
            state = await handle.status()
            assert (state.status, state.failed_task) == ("failed", f"{handle.workflow_id}.0.1")
            partial = await chord([member.s(0), member.s(1)], callback.s(), partial=True).kiq()
            assert await partial.get(timeout=10) == "ran"
        (gathered,) = callback_runs
        assert [(r.status, r.return_value) for r in gathered[:1]] == [(TaskStatus.SUCCEEDED, 0)]
        assert gathered[1].status is TaskStatus.FAILED and gathered[1].error.type == "ValueError"


async def check_abort_workflow_stops_its_tasks(factory: AppFactory) -> None:
    """Aborting a workflow cancels its running members, removes its queued ones, and
    publishes nothing more: the callback never runs, the workflow's result is aborted,
    and its status says aborted."""
    async with factory(**behaviour_settings(abort_check_interval=0.2)) as app:
        started: list[int] = []
        callback_runs: list[Any] = []

        @app.task(name="behaviour.slow")
        async def slow(x: int) -> int:
            started.append(x)
            await asyncio.Event().wait()  # runs until cancelled
            return x

        @app.task(name="behaviour.after")
        async def after(values: list[int]) -> None:
            callback_runs.append(values)

        async with app.worker(concurrency=2):
            handle = await chord([slow.s(x) for x in range(5)], after.s()).kiq()
            await _until(lambda: len(started) == 2, "two members to start")
            assert await handle.abort() == 5
            result = await handle.wait_result(timeout=10)
            assert result.status is TaskStatus.ABORTED
            await _until(
                lambda: _all_gone(app.broker, [f"{handle.workflow_id}.0.{i}" for i in range(5)]),
                "every member to end",
            )
        assert callback_runs == [], f"the callback ran after the abort: {callback_runs}"
        assert len(started) < 5, f"every member started: {started}"
        assert (await handle.status()).status == "aborted"
        assert await handle.abort() == 0


async def check_workflow_member_claimed_after_the_abort_mark_never_runs(
    factory: AppFactory,
) -> None:
    """``abort()`` marks the workflow aborted, then aborts its tasks one by one. A worker
    that claims a member in between (here: only the mark was made) must not run it: the
    member ends aborted."""
    async with factory(**behaviour_settings()) as app:
        ran: list[int] = []

        @app.task(name="behaviour.member")
        async def member(x: int) -> int:
            ran.append(x)
            return x

        handle = await group(member.s(1), member.s(2)).kiq()
        broker = cast("Workflows", app.broker)
        record, held = await broker.abort_workflow(handle.workflow_id)  # the mark alone
        assert record is not None and sorted(held) == sorted(
            f"{handle.workflow_id}.{i}" for i in (0, 1)
        ), held
        async with app.worker(concurrency=2):
            ends = [await app.handle(task_id).wait_result(timeout=10) for task_id in held]
        assert ran == [], f"members ran after their workflow was aborted: {ran}"
        assert [end.status for end in ends] == [TaskStatus.ABORTED] * 2


async def _all_gone(broker: Broker, task_ids: Sequence[str]) -> bool:
    return all([await _gone(broker, task_id) for task_id in task_ids])


async def check_zombie_member_cannot_fire_the_callback_twice(factory: AppFactory) -> None:
    """A member whose worker lost its lease (paused past it) runs again elsewhere, and the
    callback runs once: the join is part of the member's settlement, which the zombie's
    late one cannot make."""
    async with factory(**behaviour_settings()) as app:
        resume, second_done = asyncio.Event(), asyncio.Event()
        callback_runs: list[list[str]] = []

        @app.task(name="behaviour.part", retries=3)
        async def part(name: str, ctx: Context = Depends()) -> str:
            if name == "stuck" and ctx.attempt == 1:
                await resume.wait()  # paused past its lease
            elif name == "stuck":
                second_done.set()
            return f"{name}@{ctx.attempt}"

        @app.task(name="behaviour.join")
        async def join(values: list[str]) -> int:
            callback_runs.append(values)
            return len(values)

        undo = _pause_lease_renewal(
            app.broker, lambda d: d.attempt == 1 and d.task_id.endswith(".0.1")
        )
        try:
            async with app.worker(concurrency=3) as worker:
                handle = await chord([part.s("a"), part.s("stuck")], join.s()).kiq()
                await asyncio.wait_for(second_done.wait(), 10)
                assert await handle.get(timeout=10) == 2
                resume.set()
                await _until(lambda: worker.processed == 4, "the zombie to try to settle")
        finally:
            undo()
        assert callback_runs == [["a@1", "stuck@2"]]


# -- flow control (docs/flow-control.md) ----------------------------------------------


def max_in_window(times: Sequence[float], window: float = 1.0) -> int:
    """The most of ``times`` that fall in any one window of ``window`` seconds (how a
    rate limit is checked: starts per second never above the limit plus the bucket)."""
    ordered = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


async def check_rate_limit_defers_uncharged(factory: AppFactory) -> None:
    """A task over its rate limit waits, uncharged, for its token: in any one-second
    window no more start than the limit plus the bucket size, every one runs once on its
    first attempt, and a waiting one's status says why."""
    async with factory(**behaviour_settings()) as app:
        starts: list[float] = []
        attempts: list[int] = []

        @app.task(name="behaviour.limited", rate_limit="4/s")
        async def limited(n: int, ctx: Context = Depends()) -> int:
            starts.append(time.monotonic())
            attempts.append(ctx.attempt)
            return n

        async with app.worker(concurrency=8):
            handles = [await limited.kiq(n) for n in range(10)]
            reasons = set()

            async def a_reason() -> bool:
                for handle in handles:
                    state = await handle.status()
                    if state.waiting:
                        reasons.add(state.waiting)
                return bool(reasons)

            await _until(a_reason, "a waiting task's reason")
            values = [await handle.get(timeout=15) for handle in handles]
        assert values == list(range(10))
        assert attempts == [1] * 10, f"a deferral was charged: attempts {attempts}"
        assert reasons == {"rate limited: 4/s"}
        # 4 at once (the bucket), then one every 0.25 s: 6 more take at least 1.5 s
        assert max(starts) - min(starts) >= 1.4
        assert max_in_window(starts, 1.0) <= 4 + 4


async def check_rate_limit_by_key(factory: AppFactory) -> None:
    """``rate_limit=(rate, key_fn)`` keeps one bucket per key: one key's backlog does not
    hold another's tasks back."""
    async with factory(**behaviour_settings()) as app:
        starts: dict[str, list[float]] = {"a": [], "b": []}

        @app.task(name="behaviour.per_customer", rate_limit=("2/s", lambda customer: customer))
        async def per_customer(customer: str, n: int) -> None:
            starts[customer].append(time.monotonic())

        async with app.worker(concurrency=8):
            handles = [await per_customer.kiq("a", n) for n in range(5)]
            handles.append(await per_customer.kiq("b", 0))
            for handle in handles:
                await handle.get(timeout=15)
        assert max(starts["a"]) - min(starts["a"]) >= 0.9  # 2 at once, then 2 a second
        assert starts["b"][0] - min(starts["a"]) < 0.5  # b's own bucket was full


async def check_concurrency_limit_holds(factory: AppFactory) -> None:
    """``concurrency=2``: at no instant do more than 2 run, across two workers; the ones
    refused a permit wait without holding a slot, and each runs once, uncharged."""
    async with factory(**behaviour_settings(permit_wait=0.05)) as app:
        running, most, attempts = 0, 0, []

        @app.task(name="behaviour.narrow", concurrency=2)
        async def narrow(ctx: Context = Depends()) -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            attempts.append(ctx.attempt)
            await asyncio.sleep(0.1)
            running -= 1

        @app.task(name="behaviour.free")
        async def free() -> str:
            return "ran"

        async with app.worker(concurrency=4), app.worker(concurrency=4):
            handles = [await narrow.kiq() for _ in range(8)]
            # slots are not held by waiting tasks: an unlimited task gets through at once
            assert await (await free.kiq()).get(timeout=5) == "ran"
            for handle in handles:
                await handle.get(timeout=20)
        assert most == 2, f"{most} ran at once under a limit of 2"
        assert attempts == [1] * 8, f"a deferral was charged: attempts {attempts}"


async def check_concurrency_limit_per_key(factory: AppFactory) -> None:
    """``concurrency_key``: the limit holds per key, so two keys run side by side."""
    async with factory(**behaviour_settings(permit_wait=0.05)) as app:
        running: dict[str, int] = {"a": 0, "b": 0}
        most: dict[str, int] = {"a": 0, "b": 0}
        together = 0

        @app.task(name="behaviour.keyed", concurrency=1, concurrency_key=lambda who: who)
        async def keyed(who: str) -> None:
            nonlocal together
            running[who] += 1
            most[who] = max(most[who], running[who])
            together = max(together, sum(running.values()))
            await asyncio.sleep(0.1)
            running[who] -= 1

        async with app.worker(concurrency=6):
            handles = [await keyed.kiq(who) for who in "ababab"]
            for handle in handles:
                await handle.get(timeout=20)
        assert most == {"a": 1, "b": 1}
        assert together == 2


async def _fresh(sent: Awaitable[Any], old_id: str) -> Any:
    """The handle ``sent`` returns, if it is a new task (not ``old_id``)."""
    handle = await sent
    return handle if handle.task_id != old_id else None


async def check_unique_task_is_enqueued_once(factory: AppFactory) -> None:
    """``unique=True``: while a task with the same arguments is queued or running, an
    enqueue returns its handle; once it has ended, a new one is enqueued."""
    async with factory(**behaviour_settings()) as app:
        runs: list[int] = []

        @app.task(name="behaviour.unique", unique=True)
        async def only_one(n: int) -> int:
            runs.append(n)
            return n

        first = await only_one.kiq(1)
        again = await only_one.kiq(1)
        other = await only_one.kiq(2)
        assert again.task_id == first.task_id
        assert other.task_id != first.task_id
        async with app.worker():
            assert await first.get(timeout=10) == 1
            assert await other.get(timeout=10) == 2
            # the key is freed by the settlement that stores the result: on a broker
            # where those are two steps (NATS), an enqueue between them still finds it
            later = await _until(
                lambda: _fresh(only_one.kiq(1), first.task_id), "the unique key to be freed"
            )
            assert await later.get(timeout=10) == 1
        assert sorted(runs) == [1, 1, 2]


async def check_debounce_runs_the_last(factory: AppFactory) -> None:
    """``debounce``: of enqueues within the window, only the last runs; the earlier ones
    end ``superseded``, without running, and are counted."""
    async with factory(**behaviour_settings()) as app:
        runs: list[str] = []

        @app.task(name="behaviour.debounced", debounce=(0.3, lambda doc: doc))
        async def reindex(doc: str, version: int) -> int:
            runs.append(f"{doc}@{version}")
            return version

        async with app.worker():
            handles = [await reindex.kiq("d", v) for v in range(3)]
            results = [await handle.wait_result(timeout=10) for handle in handles]
        assert [r.status for r in results] == [
            TaskStatus.SUPERSEDED,
            TaskStatus.SUPERSEDED,
            TaskStatus.SUCCEEDED,
        ]
        assert runs == ["d@2"]
        assert results[0].error is not None
        assert handles[2].task_id in results[0].error.message


async def check_expired_task_never_runs(factory: AppFactory) -> None:
    """``expires``: a task not started by then ends ``expired`` without running; one
    started in time runs."""
    async with factory(**behaviour_settings()) as app:
        runs: list[str] = []

        @app.task(name="behaviour.expiring", expires=0.3)
        async def expiring(tag: str) -> str:
            runs.append(tag)
            return tag

        late = await expiring.kiq("late")
        await asyncio.sleep(0.5)  # the broker's and the worker's clocks: real time
        async with app.worker():
            result = await late.wait_result(timeout=10)
            on_time = await expiring.kiq("on time")
            assert await on_time.get(timeout=10) == "on time"
        assert result.status is TaskStatus.EXPIRED
        assert runs == ["on time"]


# Each check and the capabilities it needs; it runs on a broker that declares them all.
_QUEUE, _ABORT, _RESULTS = Capability.QUEUE, Capability.ABORT, Capability.RESULTS
_WORKFLOWS, _FLOW = Capability.WORKFLOWS, Capability.FLOW
BEHAVIOUR_REQUIRES: dict[BehaviourCheck, frozenset[Capability]] = {
    check: frozenset(needs)
    for check, needs in [
        (check_retries_then_dead_letter, {_QUEUE, _RESULTS}),
        (check_abort_queued_task_never_runs, {_QUEUE, _ABORT, _RESULTS}),
        (check_abort_running_task_is_cancelled, {_QUEUE, _ABORT, _RESULTS}),
        (check_long_task_keeps_its_lease, {_QUEUE, _RESULTS}),
        (check_zombie_cannot_settle, {_QUEUE, _RESULTS}),
        (check_poison_task_is_dead_lettered, {_QUEUE, _RESULTS}),
        (check_crashes_are_counted, {_QUEUE, _RESULTS}),
        (check_graceful_stop_releases_uncharged, {_QUEUE, _RESULTS}),
        (check_chain_passes_each_result_on, {_QUEUE, _RESULTS, _WORKFLOWS}),
        (check_chord_gathers_results_in_member_order, {_QUEUE, _RESULTS, _WORKFLOWS}),
        (check_failed_member_fails_the_chord, {_QUEUE, _RESULTS, _WORKFLOWS}),
        (check_abort_workflow_stops_its_tasks, {_QUEUE, _ABORT, _RESULTS, _WORKFLOWS}),
        (
            check_workflow_member_claimed_after_the_abort_mark_never_runs,
            {_QUEUE, _ABORT, _RESULTS, _WORKFLOWS},
        ),
        (check_zombie_member_cannot_fire_the_callback_twice, {_QUEUE, _RESULTS, _WORKFLOWS}),
        (check_rate_limit_defers_uncharged, {_QUEUE, _RESULTS, _FLOW}),
        (check_rate_limit_by_key, {_QUEUE, _RESULTS, _FLOW}),
        (check_concurrency_limit_holds, {_QUEUE, _RESULTS, _FLOW}),
        (check_concurrency_limit_per_key, {_QUEUE, _RESULTS, _FLOW}),
        (check_unique_task_is_enqueued_once, {_QUEUE, _RESULTS}),
        (check_debounce_runs_the_last, {_QUEUE, _RESULTS, _FLOW}),
        (check_expired_task_never_runs, {_QUEUE, _RESULTS}),
    ]
}

BEHAVIOUR_CHECKS: list[BehaviourCheck] = list(BEHAVIOUR_REQUIRES)
"""Every behaviour check, for a broker with every capability."""


def behaviour_checks_for(capabilities: Iterable[Capability]) -> list[BehaviourCheck]:
    """The behaviour checks a broker with ``capabilities`` must pass.

    >>> behaviour_checks_for(MyBroker.capabilities)     # doctest: +SKIP
    """
    have = frozenset(capabilities)
    return [check for check, needs in BEHAVIOUR_REQUIRES.items() if needs <= have]
