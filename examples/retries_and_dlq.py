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


@app.task(retries=3, backoff=fixed(0.1))
async def flaky(ctx: Context = Depends()) -> int:
    if ctx.attempt < 3:
        raise ConnectionError("upstream unavailable")
    return ctx.attempt  # succeeds on attempt 3; result.attempts == 3


@app.task(retries=2, backoff=exponential(base=0.05, cap=0.2))
async def broken() -> None:
    raise RuntimeError("broken on purpose")


@app.task(retries=5, retry_on=(ConnectionError, TimeoutError))
async def fetch_feed(url: str) -> bytes:
    raise KeyError(f"{url}: not retried, KeyError is not in retry_on")


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

        handles: dict[str, TaskHandle[Any]] = {
            "broken": await broken.kiq(),
            "fetch_feed": await fetch_feed.kiq("https://example.com/feed"),
            "slow_async": await slow_async.kiq(),
            "slow_sync": await slow_sync.kiq(),
        }
        for name, handle in handles.items():
            result = await handle.wait_result(timeout=5)
            assert result.error is not None
            print(f"{name}:", result.status, result.attempts, result.error.type)

        # a body no worker can decode: dead-lettered with its raw bytes, status "dead"
        await app.broker.publish([Outgoing("garbage-1", "default", b"\xc1not msgpack")])
        print("garbage:", (await app.handle("garbage-1").wait_result(timeout=5)).status)

        entries = await app.broker.dead_letters(queue=None, limit=100, offset=0)  # newest first
        for entry in entries:
            print(f"  DLQ {entry.id[:12]}  attempts={entry.attempts}  {entry.reason[:70]}")

        # requeue: back on its queue with attempts reset and the old result deleted
        task_id = handles["broken"].task_id
        entry = await app.broker.get_dead_letter(task_id)  # DeadLetterEntry or None
        assert entry is not None
        await app.broker.requeue_dead([entry.id])
        again = await handles["broken"].wait_result(timeout=5)
        print("broken, requeued:", again.status, "attempts", again.attempts)
        await app.broker.delete_dead([entry.id])  # dead again: now gone for good


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
