"""Workers and schedulers emit typed events through Hook.on_event, and write them to the
broker's capped event log, on every broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from conveyor import Conveyor, Hook, Result, Scheduler, TaskStatus, events, every, fixed
from conveyor.brokers.base import Outgoing
from conveyor.events import (
    Event,
    EventEmitter,
    EventLog,
    SchedulerTick,
    TaskAborted,
    TaskDead,
    TaskReceived,
    TaskRetried,
    TaskStarted,
    TaskSucceeded,
    WorkerHeartbeat,
    finished_event,
)
from conveyor.message import SCHEMA_VERSION, Message
from conveyor.worker.executor import Executor
from conveyor.worker.runners import SyncRunner
from tests.conftest import connected_app, eventually, fast_app


class Listener(Hook):
    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_event(self, event: Event) -> None:
        self.events.append(event)

    def of(self, task_id: str) -> list[Event]:
        return [e for e in self.events if getattr(e, "task_id", None) == task_id]


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Conveyor]:
    """The suite's ``app`` with the event log on (it is off by default)."""
    async with connected_app(request.param, tmp_path, events=True) as conveyor:
        yield conveyor


async def test_a_task_emits_received_started_then_its_outcome(app: Conveyor) -> None:
    listener = Listener()
    app.add_hook(listener)

    @app.task(name="works", queue="default")
    async def works() -> int:
        return 1

    @app.task(name="fails", retries=1, backoff=fixed(0.0))
    async def fails() -> None:
        raise ValueError("nope")

    async with app.worker(concurrency=2) as worker:
        ok = await works.kiq()
        await ok.get(timeout=5)
        bad = await fails.kiq()
        await bad.wait_result(timeout=5)

    good = listener.of(ok.task_id)
    assert [e.kind for e in good] == ["received", "started", "succeeded"]
    received, started, succeeded = good
    assert isinstance(received, TaskReceived) and isinstance(started, TaskStarted)
    assert isinstance(succeeded, TaskSucceeded)
    for event in good:
        assert isinstance(event, events.TaskEvent)
        assert (event.task, event.queue, event.attempt) == ("works", "default", 1)
        assert event.worker == worker.worker_id
    assert received.enqueued_at <= started.at <= succeeded.at
    assert succeeded.duration >= 0

    failed = listener.of(bad.task_id)
    assert [e.kind for e in failed] == [
        "received",
        "started",
        "retried",
        "received",
        "started",
        "failed",
    ]
    retried, final = failed[2], failed[5]
    assert isinstance(retried, TaskRetried) and isinstance(final, events.TaskFailure)
    assert (retried.attempt, retried.delay, retried.error_type) == (1, 0.0, "ValueError")
    assert (final.attempt, final.error_type, final.error_message) == (2, "ValueError", "nope")


async def test_the_event_log_holds_each_task_timeline(app: Conveyor) -> None:
    @app.task(name="works")
    async def works(n: int) -> int:
        return n

    async with app.worker(concurrency=4):
        handles = [await works.kiq(i) for i in range(5)]
        for handle in handles:
            await handle.get(timeout=5)
    # the worker's stop waited for its last event batch
    log = EventLog.of(app)
    for handle in handles:
        timeline = await log.timeline(handle.task_id)
        assert [e.kind for e in timeline] == ["received", "started", "succeeded"]
    everything = await log.read(limit=1000)
    assert len(everything) == 15
    assert [e.id for e in await log.recent(15)] == [e.id for e in everything]
    # a cursor pages forward: nothing is repeated, nothing skipped
    first = await log.read(limit=4)
    rest = await log.read(after=first[-1].id, limit=1000)
    assert [e.id for e in first + rest] == [e.id for e in everything]
    assert not any(isinstance(e.event, WorkerHeartbeat) for e in everything)


async def test_a_dead_message_emits_dead_with_its_reason(app: Conveyor) -> None:
    listener = Listener()
    app.add_hook(listener)
    await app.broker.publish([Outgoing(task_id="junk-1", queue="default", body=b"\xc1junk")])
    async with app.worker(concurrency=1):
        await eventually(lambda: listener.of("junk-1"))
    (dead,) = listener.of("junk-1")
    assert isinstance(dead, TaskDead)
    assert dead.task == "" and dead.queue == "default" and dead.attempt == 1
    assert "malformed message" in dead.reason


async def test_heartbeats_report_utilization_and_current_tasks(app: Conveyor) -> None:
    listener = Listener()
    app.add_hook(listener)
    release = asyncio.Event()

    @app.task(name="blocks")
    async def blocks() -> None:
        await release.wait()

    async with app.worker(concurrency=4):
        handle = await blocks.kiq()

        def busy() -> bool:
            return any(isinstance(e, WorkerHeartbeat) and e.running == 1 for e in listener.events)

        await eventually(busy)
        release.set()
        await handle.get(timeout=5)
    beat = next(e for e in listener.events if isinstance(e, WorkerHeartbeat) and e.running == 1)
    assert beat.utilization == 0.25 and beat.concurrency == 4
    assert handle.task_id in beat.current_tasks


async def test_with_no_listener_and_events_off_nothing_is_built() -> None:
    app = fast_app("memory://", events=False)

    @app.task(name="works")
    async def works() -> int:
        return 1

    async with app, app.worker(concurrency=1) as worker:
        await (await works.kiq()).get(timeout=5)
        assert worker._executor is not None and worker._executor._events is None
        assert not worker._events.active
        assert await EventLog.of(app).recent() == []


async def test_a_raising_listener_changes_nothing(app: Conveyor) -> None:
    class Broken(Hook):
        def on_event(self, event: Event) -> None:
            raise RuntimeError("listener bug")

    app.add_hook(Broken())

    @app.task(name="works")
    async def works() -> int:
        return 7

    async with app.worker(concurrency=1):
        assert await (await works.kiq()).get(timeout=5) == 7


def _message(task_id: str = "t1") -> Message:
    return Message(version=SCHEMA_VERSION, task_id=task_id, task="t", queue="q")


def test_every_terminal_result_maps_to_its_event() -> None:
    def result(status: TaskStatus) -> Result[Any]:
        return Result(task_id="t1", task="t", status=status, attempts=2, execution_time=0.5)

    assert isinstance(finished_event(_message(), result(TaskStatus.SUCCEEDED), "w"), TaskSucceeded)
    assert isinstance(
        finished_event(_message(), result(TaskStatus.FAILED), "w"), events.TaskFailure
    )
    aborted = finished_event(_message(), result(TaskStatus.ABORTED), "w")
    assert isinstance(aborted, TaskAborted)
    assert (aborted.attempt, aborted.duration, aborted.worker) == (2, 0.5, "w")
    assert isinstance(finished_event(_message(), result(TaskStatus.DEAD), "w"), TaskDead)


async def test_after_execute_with_an_aborted_result_emits_aborted() -> None:
    # the contract abort relies on: every after_execute dispatch emits the terminal event
    app = fast_app("memory://")
    seen: list[Event] = []
    async with app:
        executor = Executor(
            app,
            None,  # type: ignore[arg-type]
            1.0,
            run_sync=SyncRunner(1),
            worker_id="w1",
            emitter=EventEmitter([seen.append]),
        )
        aborted: Result[Any] = Result(
            task_id="t1", task="t", status=TaskStatus.ABORTED, attempts=1, execution_time=0.2
        )
        await executor._hooks("after_execute", _message(), aborted)
    assert [e.kind for e in seen] == ["aborted"]


async def test_schedulers_emit_fresh_and_duplicate_ticks(app: Conveyor) -> None:
    listener = Listener()
    app.add_hook(listener)

    @app.task(name="ping", schedule=[every(seconds=1, id="ping-1s")])
    async def ping() -> None: ...

    first, second = Scheduler(app, grace=5.0), Scheduler(app, grace=5.0)
    await first.run_pass()
    await second.run_pass()
    ticks = [e for e in listener.events if isinstance(e, SchedulerTick)]
    assert len(ticks) == 2
    assert [t.fresh for t in ticks] == [True, False]
    assert ticks[0].fire_time == ticks[1].fire_time and ticks[0].task_id == ticks[1].task_id
    assert (ticks[0].scheduler, ticks[1].scheduler) == (first.scheduler_id, second.scheduler_id)
    assert ticks[0].task == "ping" and ticks[0].schedule_id == "ping-1s"
    logged = [e.event for e in await EventLog.of(app).recent()]
    assert logged == ticks


class _StuckStore:
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.writing = 0  # appends begun
        self.appended: list[Sequence[bytes]] = []

    async def append(self, records: Sequence[bytes]) -> None:
        self.writing += 1
        await self.gate.wait()
        self.appended.append(records)

    async def read(self, after: str = "", limit: int = 100) -> list[tuple[str, bytes]]:
        return []

    async def recent(self, limit: int = 100) -> list[tuple[str, bytes]]:
        return []


def _started(n: int) -> TaskStarted:
    return TaskStarted(
        at=float(n), task_id=str(n), task="t", queue="q", attempt=1, worker="w", enqueued_at=0.0
    )


async def test_the_emitter_batches_log_writes_per_loop_turn_and_drops_when_they_back_up() -> None:
    store = _StuckStore()
    recorder = EventEmitter(log=EventLog(store), max_pending=1)
    recorder.emit(_started(1))
    recorder.emit(_started(2))  # same turn: one batch
    await eventually(lambda: store.writing == 1, what="the first write")
    recorder.emit(_started(3))  # the first write is stuck: this batch is dropped
    await eventually(lambda: recorder.dropped == 1, what="a dropped batch")
    assert store.writing == 1
    store.gate.set()
    await recorder.aclose()
    assert [len(batch) for batch in store.appended] == [2]


async def test_the_emitter_writes_batches_one_after_another_in_order() -> None:
    """Two appends in flight at once could land in either order, and the dashboard takes
    a task's last event as its state (a deferred task listed as running)."""
    store = _StuckStore()
    recorder = EventEmitter(log=EventLog(store), max_pending=4)
    recorder.emit(_started(1))
    await eventually(lambda: store.writing == 1, what="the first write")
    recorder.emit(_started(2))  # a later turn: a second batch, behind the first
    await asyncio.sleep(0.05)  # sleep: a second append must not begin meanwhile
    assert store.writing == 1
    store.gate.set()
    await recorder.aclose()
    assert store.writing == 2 and recorder.dropped == 0
    assert [len(batch) for batch in store.appended] == [1, 1]
    assert [msgspec.msgpack.decode(batch[0])["task_id"] for batch in store.appended] == ["1", "2"]


async def test_the_emitter_keeps_heartbeats_out_of_the_log() -> None:
    store = _StuckStore()
    store.gate.set()
    recorder = EventEmitter(log=EventLog(store))
    beat = WorkerHeartbeat(
        at=1.0,
        worker="w",
        hostname="h",
        pid=1,
        queues=["q"],
        concurrency=1,
        running=0,
        processed=0,
        utilization=0.0,
    )
    recorder.emit(beat)
    await recorder.aclose()
    assert store.appended == []


async def test_aborting_a_running_task_emits_aborted(app: Conveyor) -> None:
    listener = Listener()
    app.add_hook(listener)

    @app.task(name="sleeps")
    async def sleeps() -> None:
        await asyncio.Event().wait()  # runs until aborted

    async with app.worker(concurrency=1):
        handle = await sleeps.kiq()
        await eventually(lambda: any(e.kind == "started" for e in listener.of(handle.task_id)))
        await handle.abort()
        await eventually(lambda: any(e.kind == "aborted" for e in listener.of(handle.task_id)))
    kinds = [e.kind for e in listener.of(handle.task_id)]
    assert kinds == ["received", "started", "aborted"]
    timeline = await EventLog.of(app).timeline(handle.task_id)
    assert [e.kind for e in timeline] == kinds
