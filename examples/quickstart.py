"""Quickstart: define tasks, run a worker in this event loop, enqueue, read results.

Run: python examples/quickstart.py        (docs/getting-started.md)
"""

from __future__ import annotations

import asyncio

from conveyor import Conveyor, TaskFailed

app = Conveyor("memory://")  # in-process broker: no server, same semantics as the others


@app.task
async def add(a: int, b: int) -> int:
    return a + b


@app.task(retries=2, timeout=10)
def word_count(text: str) -> int:  # plain def: runs in the worker's thread pool
    return len(text.split())


@app.task
async def divide(a: float, b: float) -> float:
    return a / b


async def main() -> None:
    print("direct call, no queue:", await add(1, 2))  # a task stays a plain callable

    async with app, app.worker(concurrency=10):  # connect, then run a worker in this loop
        handle = await add.kiq(2, 3)  # .kiq() == .enqueue(): returns at once
        print("task id:", handle.task_id)
        print("get():", await handle.get(timeout=5))

        result = await (await word_count.kiq("the quick brown fox")).wait_result(timeout=5)
        print("wait_result():", result.status, result.return_value, f"attempts={result.attempts}")

        failing = await divide.kiq(1, 0)
        try:
            await failing.get(timeout=5)
        except TaskFailed as exc:
            print("get() raised TaskFailed:", exc.error.type, "-", exc.error.message)
        print("status():", (await failing.status()).status)


if __name__ == "__main__":
    asyncio.run(main())
