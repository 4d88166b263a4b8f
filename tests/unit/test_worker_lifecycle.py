"""Worker behaviour: free-slot fetching, graceful shutdown, lease renewal from a thread."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from conveyor import Context, Conveyor, Depends, TaskStatus
from tests.conftest import connected_app, fast_app


async def test_worker_fetches_only_as_many_as_free_slots(app: Conveyor) -> None:
    gate = asyncio.Event()

    @app.task
    async def wait_gate() -> None:
        await gate.wait()

    for _ in range(10):
        await wait_gate.kiq()
    async with app.worker(concurrency=3):
        await asyncio.sleep(0.2)
        (depth,) = await app.broker.queue_depths()
        assert (depth.running, depth.ready) == (3, 7)
        gate.set()


async def test_graceful_stop_finishes_short_tasks_and_releases_long_ones_uncharged() -> None:
    app = fast_app(grace=0.3)
    attempts: list[tuple[str, int]] = []

    @app.task
    async def job(kind: str, ctx: Context = Depends()) -> str:
        attempts.append((kind, ctx.attempt))
        await asyncio.sleep(0.1 if kind == "short" else 30)
        return kind

    async with app:
        short = await job.kiq("short")
        long = await job.kiq("long")
        worker = app.worker(concurrency=2)
        await worker.start()
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await worker.stop()
        assert time.monotonic() - started < 2.0
        assert await short.get(timeout=1) == "short"
        state = await long.status()
        assert state.status is TaskStatus.QUEUED  # released at once, attempt not charged
        assert state.attempts == 0
    assert sorted(attempts) == [("long", 1), ("short", 1)]


async def test_lease_is_renewed_while_the_event_loop_is_blocked() -> None:
    """A task that blocks the loop longer than the lease keeps its lease (thread renewal)."""
    app = fast_app(lease=0.5)
    reaped: list[int] = []

    @app.task
    async def hog() -> str:
        broker = app.broker

        def reap_from_elsewhere() -> None:  # another worker's reaper, while we block
            for _ in range(4):
                time.sleep(0.25)
                reaped.append(asyncio.run(broker.reap()))

        other = threading.Thread(target=reap_from_elsewhere)
        other.start()
        time.sleep(1.2)  # noqa: ASYNC251 - blocking the loop for over 2x the lease is the point
        other.join()
        return "done"

    async with app, app.worker():
        handle = await hog.kiq()
        result = await handle.wait_result(timeout=10)
    assert result.return_value == "done"
    assert result.attempts == 1
    assert reaped == [0, 0, 0, 0]


async def test_zombie_completion_is_discarded_after_lease_loss() -> None:
    app = fast_app(lease=0.5)
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
        await asyncio.sleep(0.8)
        await app.broker.reap()  # the lease expired: the message is ready again
        (stolen,) = await app.broker.fetch(["default"], 1, 1.0)
        assert stolen.attempt == 2
        assert await stolen.extend_lease(30)
        blocker.set()
        await asyncio.sleep(0.3)
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
    async with connected_app("sqlite", tmp_path, heartbeat_interval=60.0) as app:

        @app.task
        async def noop() -> None:
            return None

        async with app.worker():
            for _ in range(3):
                await (await noop.kiq()).get(timeout=5)
            deadline = asyncio.get_running_loop().time() + 5
            while True:
                (info,) = await app.broker.workers()
                if info.processed == 3:
                    break
                assert asyncio.get_running_loop().time() < deadline, info
                await asyncio.sleep(0.05)


@pytest.mark.parametrize("scheme", ["memory", "sqlite", "redis"])
async def test_stopping_an_idle_worker_interrupts_its_fetch(scheme: str, tmp_path: Path) -> None:
    # with a fetch that would wait 30 s, only an interrupted fetch lets stop() end in time
    async with connected_app(scheme, tmp_path, fetch_wait=30.0) as app:
        worker = app.worker()
        await worker.start()
        await asyncio.sleep(0.2)  # the fetch is waiting now
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

    async with connected_app(scheme, tmp_path, lease=1.0) as paused_app:

        @paused_app.task(name="side_effect")
        async def side_effect() -> None:
            runs.append("run")

        handle = await side_effect.kiq()
        other_ready = threading.Event()
        stop_other = threading.Event()

        def run_other_worker() -> None:
            async def serve() -> None:
                other = fast_app(paused_app.settings.broker_url, lease=1.0)
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
                time.sleep(3.0)  # noqa: ASYNC251 - frozen: nothing of this loop runs
            return got

        monkeypatch.setattr(type(paused_app.broker), "fetch", fetch_then_freeze)
        other = threading.Thread(target=run_other_worker)
        async with paused_app.worker():
            result = await handle.wait_result(timeout=10)
            await asyncio.sleep(0.5)  # the resumed worker had its chance to run it again
        stop_other.set()
        other.join(10)
    assert result.status is TaskStatus.SUCCEEDED
    assert runs == ["run"], "the paused worker started a body another worker had run"
