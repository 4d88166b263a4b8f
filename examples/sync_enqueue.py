"""Enqueue and wait from synchronous code: no event loop, other threads, inside a loop.

Run: python examples/sync_enqueue.py        (docs/tasks.md#from-synchronous-code)
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from conveyor import Conveyor

app = Conveyor("memory://", fetch_wait=0.1)


@app.task
async def add(a: int, b: int) -> int:
    return a + b


def legacy_view(n: int) -> int:
    """Plain sync code (a Django view, a script, a sync library callback)."""
    handle = add.kiq_sync(n, n)  # works with or without a loop in this thread
    return handle.get_sync(timeout=5)


def run_worker_in_background() -> tuple[threading.Thread, threading.Event]:
    """A worker on its own loop in a thread, standing in for a `conveyor worker` process."""
    stop = threading.Event()

    async def serve() -> None:
        async with app.worker(concurrency=8):
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=lambda: asyncio.run(serve()))
    thread.start()
    return thread, stop


def main() -> None:
    # 1. no event loop anywhere: enqueue first, results later
    handle = add.kiq_sync(2, 3)  # == add.enqueue_sync(2, 3)
    handles = [add.kiq_sync(n, n) for n in range(5)]
    print("enqueued without a loop:", 1 + len(handles), "tasks")

    worker, stop = run_worker_in_background()
    value = handle.get_sync(timeout=5)  # and handle.wait_result_sync(timeout=5)
    print("get_sync:", value, [h.get_sync(timeout=5) for h in handles])
    state = handle.status_sync()  # TaskState: poll it from a view
    result = handle.result_sync()  # the stored Result now; ResultMissing if none
    print("status_sync:", state.status, "| result_sync:", result.return_value)
    handle = add.with_options(delay=0.1).kiq_sync(2, 3)
    print("with_options(delay=0.1):", handle.wait_result_sync(timeout=5).status)

    # 2. from many threads at once
    with ThreadPoolExecutor(max_workers=8) as pool:
        print("from 8 threads:", sum(pool.map(legacy_view, range(100))))

    # 3. from sync code called inside a running event loop (e.g. a helper in an async route)
    async def route() -> int:
        handle = add.kiq_sync(7, 7)  # fine: enqueueing does not need this loop
        return await asyncio.to_thread(handle.get_sync, 5)  # waiting: off the loop thread

    print("inside a loop:", asyncio.run(route()))

    stop.set()
    worker.join()


if __name__ == "__main__":
    main()
