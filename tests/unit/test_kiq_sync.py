"""kiq_sync works from synchronous code: repeatedly, from many threads, with or without a
running event loop."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from conveyor import Conveyor
from tests.conftest import fast_app


def _make() -> tuple[Conveyor, object]:
    app = fast_app()

    @app.task
    async def square(n: int) -> int:
        return n * n

    return app, square


def test_kiq_sync_without_any_event_loop_repeatedly() -> None:
    app, square = _make()
    handles = [square.kiq_sync(n) for n in range(20)]  # type: ignore[attr-defined]
    assert len({h.task_id for h in handles}) == 20

    async def serve() -> list[int]:
        async with app, app.worker(concurrency=4):
            return [await h.get(timeout=5) for h in handles]

    assert asyncio.run(serve()) == [n * n for n in range(20)]
    asyncio.run(app.close())


def test_kiq_sync_from_many_threads_at_once() -> None:
    app, square = _make()
    with ThreadPoolExecutor(max_workers=8) as pool:
        handles = list(pool.map(lambda n: square.kiq_sync(n), range(200)))  # type: ignore[attr-defined]
    assert len({h.task_id for h in handles}) == 200

    async def serve() -> int:
        async with app, app.worker(concurrency=20):
            values = [await h.get(timeout=10) for h in handles]
            return sum(values)

    assert asyncio.run(serve()) == sum(n * n for n in range(200))
    asyncio.run(app.close())


async def test_kiq_sync_inside_a_running_loop_with_a_worker_and_get_sync() -> None:
    app, square = _make()
    async with app, app.worker(concurrency=2):
        # sync code called from async code (e.g. a sync helper inside a FastAPI route)
        handle = square.kiq_sync(7)  # type: ignore[attr-defined]
        assert await handle.get(timeout=5) == 49
        results: list[int] = []

        def from_thread() -> None:
            results.append(square.kiq_sync(3).get_sync(timeout=5))  # type: ignore[attr-defined]

        thread = threading.Thread(target=from_thread)
        thread.start()
        await asyncio.to_thread(thread.join)
        assert results == [9]
