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
    assert await add(1, 2) == 3  # a direct call: a task stays a plain callable, no queue
    assert word_count("two words") == 2  # a def task called directly just runs

    async with app, app.worker(concurrency=10):  # connect, then run a worker in this loop
        handle = await add.kiq(2, 3)  # == await add.enqueue(2, 3): returns at once
        print("task id:", handle.task_id)
        result = await handle.wait_result(timeout=5)  # Result[int]
        print("wait_result():", result.status, result.return_value, f"is_err={result.is_err}")
        print(f"  attempts={result.attempts}, ran {result.execution_time:.4f} s")
        value = await handle.get(timeout=5)  # the value, or raises TaskFailed
        state = await handle.status()
        print("get():", value, "| status():", state.status)

        count = await (await word_count.kiq("the quick brown fox")).get(timeout=5)
        print("word_count (a def task, in the worker's threads):", count)

        failing = await divide.kiq(1, 0)
        try:
            await failing.get(timeout=5)
        except TaskFailed as exc:
            print("get() raised TaskFailed:", exc.error.type, "-", exc.error.message)
        print("status():", (await failing.status()).status)


if __name__ == "__main__":
    asyncio.run(main())
