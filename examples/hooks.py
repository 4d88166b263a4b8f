"""Hooks: propagate a header from producer to worker, time executions, watch retries and
dead letters.

Run: python examples/hooks.py        (docs/hooks.md)
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import msgspec

from conveyor import Context, Conveyor, ErrorInfo, Hook, Message, Result, fixed

app = Conveyor("memory://", fetch_wait=0.1)


class Tracing(Hook):
    """Only the methods you override are called; the others cost nothing."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}

    async def before_enqueue(self, message: Message) -> Message:
        # Message is frozen: return a modified copy
        headers = {**message.headers, "trace-id": uuid.uuid4().hex[:8]}
        return msgspec.structs.replace(message, headers=headers)

    async def after_enqueue(self, message: Message, task_id: str) -> None:
        print(f"enqueued  {message.task} trace={message.headers['trace-id']}")

    async def before_execute(self, message: Message, context: Context) -> None:
        self.started[message.task_id] = time.perf_counter()
        print(
            f"start     {message.task} trace={message.headers['trace-id']} "
            f"attempt={context.attempt}"
        )

    async def after_execute(self, message: Message, result: Result[Any]) -> None:
        elapsed = time.perf_counter() - self.started.pop(message.task_id)
        print(f"finished  {message.task} {result.status} in {elapsed * 1000:.1f} ms")

    async def on_retry(
        self, message: Message, attempt: int, delay: float, error: ErrorInfo
    ) -> None:
        self.started.pop(message.task_id, None)
        print(f"retry     {message.task} after attempt {attempt} in {delay:.2f}s: {error.message}")

    async def on_dead_letter(self, message: Message | None, task_id: str, reason: str) -> None:
        print(f"dead      {task_id[:8]}: {reason}")


app.add_hook(Tracing())


@app.task
async def greet(name: str) -> str:
    return f"hello {name}"


@app.task(retries=1, backoff=fixed(0.05))
async def fails() -> None:
    raise RuntimeError("always")


async def main() -> None:
    async with app, app.worker(concurrency=1):
        await (await greet.kiq("world")).get(timeout=5)
        await (await fails.kiq()).wait_result(timeout=5)


if __name__ == "__main__":
    asyncio.run(main())
