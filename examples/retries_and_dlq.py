"""Retries, backoff, timeouts, and the dead-letter queue (API and CLI).

Run: python examples/retries_and_dlq.py        (docs/retries-and-failures.md)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from click.testing import CliRunner

from conveyor import Context, Conveyor, Depends, TaskHandle, exponential, fixed
from conveyor.brokers.base import Outgoing
from conveyor.cli import main as conveyor_cli

app = Conveyor("memory://", fetch_wait=0.1)


@app.task(retries=3, backoff=fixed(0.05))
async def flaky(ctx: Context = Depends()) -> int:
    if ctx.attempt < 3:
        raise ConnectionError(f"attempt {ctx.attempt}: upstream unavailable")
    return ctx.attempt


@app.task(retries=2, backoff=exponential(base=0.05, cap=0.2))
async def broken() -> None:
    raise RuntimeError("broken on purpose")


@app.task(retries=5, retry_on=(ConnectionError,))
async def picky() -> None:
    raise KeyError("not retried: KeyError is not in retry_on")


@app.task(timeout=0.2)
async def slow_async() -> None:
    await asyncio.sleep(10)  # cancelled at 0.2 s


@app.task(timeout=0.2)
def slow_sync() -> str:
    time.sleep(0.5)  # cannot be interrupted: the thread runs on, its result is discarded
    print("slow_sync: its thread ran to the end anyway; this return value is discarded")
    return "too late"


async def main() -> None:
    async with app, app.worker(concurrency=4):
        ok = await (await flaky.kiq()).wait_result(timeout=5)
        print("flaky:", ok.status, "value", ok.return_value, "attempts", ok.attempts)

        handles: dict[str, TaskHandle[Any]] = {}
        for task in (broken, picky, slow_async, slow_sync):
            handles[task.__name__] = handle = await task.kiq()
            result = await handle.wait_result(timeout=5)
            assert result.error is not None
            print(f"{task.__name__}:", result.status, result.attempts, result.error.type)

        # a body no worker can decode: dead-lettered with its raw bytes, status "dead"
        await app.broker.publish([Outgoing("garbage-1", "default", b"\xc1not msgpack")])
        print("garbage:", (await app.handle("garbage-1").wait_result(timeout=5)).status)

        for entry in await app.broker.dead_letters():
            print(f"  DLQ {entry.id[:12]}  attempts={entry.attempts}  {entry.reason[:70]}")

        # requeue: back on its queue with attempts reset and the old result deleted
        await app.broker.requeue_dead([handles["broken"].task_id])
        again = await handles["broken"].wait_result(timeout=5)
        print("broken, requeued:", again.status, "attempts", again.attempts)


def dlq_cli() -> None:
    # The same, from the command line. With memory:// the CLI only sees this process's
    # broker, so we call it in-process; on SQLite or Redis you run it from a shell
    # (examples/sqlite_processes.py does):
    #   conveyor dlq pkg.tasks:app list
    runner = CliRunner()
    for command in (["list"], ["show", "garbage-1"], ["purge", "--yes"]):
        print(f"$ conveyor dlq pkg.tasks:app {' '.join(command)}")
        print(runner.invoke(conveyor_cli, ["dlq", "__main__:app", *command]).output)


if __name__ == "__main__":
    asyncio.run(main())
    dlq_cli()  # outside the event loop: each CLI command runs its own
