"""Worker behaviour: free-slot fetching, graceful shutdown, lease renewal from a thread."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from conveyor import Context, Conveyor, Depends, TaskStatus
from conveyor.testing import ManualClock
from tests.conftest import (
    connected_app,
    eventually,
    eventually_blocking,
    fast_app,
    fetch_is_waiting,
)


async def test_worker_fetches_only_as_many_as_free_slots(
    app: Conveyor, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = asyncio.Event()
    started: list[None] = []

    @app.task
    async def wait_gate() -> None:
        started.append(None)
        await gate.wait()

    # each fetch as the worker asks for it: (slots asked for, deliveries it held then)
    asked: list[tuple[int, int]] = []
    real_fetch = app.broker.fetch

    async def recording_fetch(queues: list[str], count: int, wait: float) -> object:
        asked.append((count, sum(len(got) for got in fetched)))
        got = await real_fetch(queues, count, wait)
        fetched.append(got)
        return got

    fetched: list[list[object]] = []
    monkeypatch.setattr(app.broker, "fetch", recording_fetch)
    for _ in range(10):
        await wait_gate.kiq()
    async with app.worker(concurrency=3):
        await eventually(lambda: len(started) == 3, what="three tasks to start")
        # a fetch beyond the free slots begins before the tasks it follows get to run
        assert all(count + held <= 3 for count, held in asked), asked
        (depth,) = await app.broker.queue_depths()
        assert (depth.running, depth.ready) == (3, 7)
        gate.set()


async def test_a_slot_frees_when_the_body_ends_not_when_its_settlement_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The next task starts while the last one's ack is still on its way: a settlement
    is a round trip that no slot needs to sit out."""
    app = fast_app()
    started: list[int] = []
    acked = asyncio.Event()

    @app.task
    async def job(n: int) -> int:
        started.append(n)
        return n

    async with app:
        real_settle = app.broker.settle

        async def slow_settle(batch: list[object]) -> list[bool]:
            await acked.wait()
            return await real_settle(batch)  # type: ignore[arg-type]

        monkeypatch.setattr(app.broker, "settle", slow_settle)
        first, second = await job.kiq(1), await job.kiq(2)
        async with app.worker(concurrency=1):
            await eventually(lambda: started == [1, 2], what="the second task to start")
            assert not acked.is_set()
            acked.set()
            assert [await first.get(timeout=5), await second.get(timeout=5)] == [1, 2]


def test_a_worker_holds_ahead_what_it_starts_in_50_ms_and_never_more_than_a_batch() -> None:
    worker = fast_app().worker(concurrency=100)
    for rate, ahead in [(0.0, 0), (10.0, 0), (1_000.0, 50), (8_000.0, 100), (1e6, 100)]:
        worker._rate = rate  # bodies ending per second
        assert worker._ahead_target() == ahead, rate
    recycled = fast_app().worker(concurrency=100, max_tasks=10)
    recycled._rate = 1e6
    assert recycled._ahead_target() == 0  # it would claim past its last task


async def test_deliveries_fetched_ahead_start_as_slots_free_and_go_back_uncharged_at_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = fast_app(grace=0.1)
    runs: list[tuple[int, int]] = []
    gate = asyncio.Event()

    @app.task
    async def job(n: int, ctx: Context = Depends()) -> None:
        runs.append((n, ctx.attempt))
        await gate.wait()

    async with app:
        handles = [await job.kiq(n) for n in range(6)]
        worker = app.worker(concurrency=2)
        monkeypatch.setattr(worker, "_ahead_target", lambda: 2)
        await worker.start()
        await eventually(lambda: len(runs) == 2 and len(worker._ahead) == 2)
        (depth,) = await app.broker.queue_depths()
        assert (depth.running, depth.ready) == (4, 2)  # two run, two wait in hand
        await worker.stop()  # the running two are cancelled after the grace
        assert [(await h.status()).attempts for h in handles] == [0] * 6, "all uncharged"
        gate.set()
        async with app.worker(concurrency=6):
            for handle in handles:
                await handle.wait_result(timeout=5)
    # the two cancelled at the stop ran again, the four never started ran once, all as
    # attempt 1: nothing handed back was charged
    assert sorted(runs) == sorted([(0, 1), (1, 1)] + [(n, 1) for n in range(6)])


async def test_graceful_stop_finishes_short_tasks_and_releases_long_ones_uncharged() -> None:
    app = fast_app(grace=0.3)
    attempts: list[tuple[str, int]] = []
    finish_short = asyncio.Event()

    @app.task
    async def job(kind: str, ctx: Context = Depends()) -> str:
        attempts.append((kind, ctx.attempt))
        if kind == "short":
            await finish_short.wait()
        else:
            await asyncio.Event().wait()  # never ends by itself
        return kind

    async with app:
        short = await job.kiq("short")
        long = await job.kiq("long")
        worker = app.worker(concurrency=2)
        await worker.start()
        await eventually(lambda: len(attempts) == 2, what="both tasks to start")
        stopping = asyncio.create_task(worker.stop())
        # the fetch loop has ended: the stop is in its grace period, and the short task
        # ends within it
        await eventually(lambda: worker._fetcher is not None and worker._fetcher.done())
        finish_short.set()
        # the long task never ends: only a stop that cancels it after the grace returns
        await asyncio.wait_for(stopping, 10)
        assert await short.get(timeout=1) == "short"
        state = await long.status()
        assert state.status is TaskStatus.QUEUED  # released at once, attempt not charged
        assert state.attempts == 0
    assert sorted(attempts) == [("long", 1), ("short", 1)]


async def test_lease_is_renewed_while_the_event_loop_is_blocked() -> None:
    """A task that blocks the loop longer than the lease keeps its lease (thread renewal)."""
    clock = ManualClock()
    app = fast_app(lease=0.5, clock=clock)
    reaped: list[int] = []
    renewed: list[bool] = []

    @app.task
    async def hog() -> str:
        broker = app.broker
        assert worker._renewer is not None
        renewer = worker._renewer

        def reap_from_elsewhere() -> None:  # another worker's reaper, while we block
            for _ in range(4):
                before = renewer.renewals
                clock.advance(0.4)  # 4 x 0.4 s: over 3 leases in all
                renewed.append(
                    eventually_blocking(lambda: renewer.renewals > before, timeout=5)  # noqa: B023
                )
                reaped.append(asyncio.run(broker.reap()))

        other = threading.Thread(target=reap_from_elsewhere)
        other.start()
        other.join()  # the loop is blocked until the other reaper is done
        return "done"

    async with app, app.worker() as worker:
        handle = await hog.kiq()
        result = await handle.wait_result(timeout=10)
    assert result.return_value == "done"
    assert result.attempts == 1
    assert renewed == [True] * 4
    assert reaped == [0, 0, 0, 0]


async def test_zombie_completion_is_discarded_after_lease_loss() -> None:
    clock = ManualClock()
    app = fast_app(lease=0.5, clock=clock)
    blocker = threading.Event()

    @app.task(retries=3)
    def stuck() -> str:
        blocker.wait(5)
        return "late"

    async with app:
        handle = await stuck.kiq()
        worker = app.worker(concurrency=1)
        # keep the lease thread from renewing, as if the process were paused
        await worker.start()
        assert worker._renewer is not None
        worker._renewer.stop()
        await eventually(lambda: worker.claimed == 1, what="the task to be claimed")
        clock.advance(0.6)  # past the lease
        await app.broker.reap()  # the lease expired: the message is ready again
        (stolen,) = await app.broker.fetch(["default"], 1, 1.0)
        assert stolen.attempt == 2
        assert await stolen.extend_lease(30)
        blocker.set()
        await eventually(lambda: worker.processed == 1, what="the zombie's completion")
        assert await app.result_store.get(handle.task_id) is None  # zombie's result discarded
        assert await stolen.ack()
        await worker.stop()


async def test_startup_and_shutdown_handlers_bracket_the_worker(app: Conveyor) -> None:
    events: list[str] = []

    @app.on_startup
    async def open_pool() -> None:
        app.state["pool"] = "open"
        events.append("startup")

    @app.on_shutdown
    def close_pool() -> None:
        events.append("shutdown")

    @app.task
    async def uses_state() -> str:
        return str(app.state["pool"])

    async with app.worker():
        assert await (await uses_state.kiq()).get(timeout=5) == "open"
    assert events == ["startup", "shutdown"]


async def test_worker_heartbeat_is_visible(app: Conveyor) -> None:
    async with app.worker(concurrency=7, queues=["default", "other"]):
        (info,) = await app.broker.workers()
    assert info.concurrency == 7
    assert info.queues == ["default", "other"]


async def test_the_processed_count_is_reported_soon_after_tasks_finish(tmp_path: Path) -> None:
    # a heartbeat interval far longer than the test: only a finish-triggered beat reports
    clock = ManualClock()
    async with connected_app("sqlite", tmp_path, heartbeat_interval=60.0, clock=clock) as app:

        @app.task
        async def noop() -> None:
            return None

        async with app.worker():
            for _ in range(3):
                await (await noop.kiq()).get(timeout=5)
            began = clock.monotonic()

            async def reported() -> bool:
                clock.advance(0.1)  # the gap between two finish-triggered beats passes
                (info,) = await app.broker.workers()
                return info.processed == 3

            await eventually(reported, what="a heartbeat with processed == 3")
            assert clock.monotonic() - began < 30, "reported by the interval, not the finish"


@pytest.mark.parametrize("scheme", ["memory", "sqlite", "redis"])
async def test_stopping_an_idle_worker_interrupts_its_fetch(scheme: str, tmp_path: Path) -> None:
    # with a fetch that would wait 30 s, only an interrupted fetch lets stop() end in time
    async with connected_app(scheme, tmp_path, fetch_wait=30.0) as app:
        worker = app.worker()
        await worker.start()
        await eventually(lambda: fetch_is_waiting(app.broker), what="the fetch to wait")
        await asyncio.wait_for(worker.stop(), 5.0)


@pytest.mark.parametrize("scheme", ["sqlite", "redis"])
async def test_a_worker_paused_after_its_claim_does_not_start_what_another_ran(
    scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker frozen between claiming a task and starting it (SIGSTOP, a paused VM: its
    loop and its lease thread stop alike) must not start the body once it resumes, when
    the lease expired meanwhile and another worker ran the task (G2)."""
    from conveyor.worker import lease as lease_module

    runs: list[str] = []
    # SQLite keeps leases by the app's clock, which both workers share here; Redis keeps
    # them by the server's, so there the pause lasts until the real lease has run out
    clock = ManualClock() if scheme == "sqlite" else None
    on_clock: dict[str, object] = {} if clock is None else {"clock": clock}

    async with connected_app(scheme, tmp_path, lease=1.0, **on_clock) as paused_app:

        @paused_app.task(name="side_effect")
        async def side_effect() -> None:
            runs.append("run")

        handle = await side_effect.kiq()
        other_ready = threading.Event()
        stop_other = threading.Event()

        def run_other_worker() -> None:
            async def serve() -> None:
                other = fast_app(paused_app.settings.broker_url, lease=1.0, **on_clock)
                other.tasks = paused_app.tasks
                async with other, other.worker():
                    other_ready.set()
                    await asyncio.to_thread(stop_other.wait)

            asyncio.run(serve())

        # the frozen process: no lease renewal, and the loop stops right after the claim
        monkeypatch.setattr(lease_module.LeaseRenewer, "start", lambda self: None)
        real_fetch = type(paused_app.broker).fetch
        frozen: list[bool] = []

        async def fetch_then_freeze(self: object, *args: object) -> object:
            got = await real_fetch(self, *args)  # type: ignore[arg-type]
            if got and not frozen:
                frozen.append(True)
                other.start()  # the other worker reaps the expired lease and runs it
                other_ready.wait(10)
                if clock is not None:
                    clock.advance(1.0)  # the pause outlasts the lease

                def ran_elsewhere() -> bool:
                    if clock is not None:
                        clock.advance(0.05)  # and goes on, for the other worker's reaper
                    return bool(runs)

                # frozen: nothing of this loop runs until the other worker ran the task
                eventually_blocking(ran_elsewhere, what="the other worker to run the task")
            return got

        monkeypatch.setattr(type(paused_app.broker), "fetch", fetch_then_freeze)
        other = threading.Thread(target=run_other_worker)
        async with paused_app.worker() as worker:
            result = await handle.wait_result(timeout=10)
            # the resumed worker is done with its delivery: dropped, or (wrongly) run
            await eventually(lambda: worker.processed == 1, what="the resumed worker")
        stop_other.set()
        other.join(10)
    assert result.status is TaskStatus.SUCCEEDED
    assert runs == ["run"], "the paused worker started a body another worker had run"


async def test_stop_ends_an_abort_watcher_whose_client_swallowed_the_cancel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # redis-py's health-check ping can swallow the CancelledError of stop(): the watcher
    # must still end (by the halt event), not loop on for another abort_check_interval
    app = fast_app(abort_check_interval=60.0)
    waiting = asyncio.Event()
    swallowed: list[None] = []
    async with app:
        real_wait = app.broker.wait_abort_signal

        async def swallowing_wait(timeout: float) -> list[str]:
            waiting.set()
            try:
                return list(await real_wait(timeout))
            except asyncio.CancelledError:
                swallowed.append(None)
                return []

        monkeypatch.setattr(app.broker, "wait_abort_signal", swallowing_wait)
        worker = app.worker()
        async with worker:
            await waiting.wait()
            watcher = worker._abort_watch
            assert watcher is not None
        assert swallowed, "the cancel never reached the client"
        assert watcher.done(), "the abort watcher outlived the worker"
