"""Aborting tasks: queued and delayed ones never run, a running async task is cancelled in
its worker, a running sync task sees ctx.abort_requested; progress while it runs.

Run: python examples/abort.py                  (docs/aborting.md)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

from conveyor import AbortOutcome, Context, Conveyor, Depends, TaskFailed, TaskStatus

app = Conveyor("memory://", fetch_wait=0.1)
started = asyncio.Event()
sync_started = threading.Event()


@app.task(retries=3)  # retries never apply to an abort
async def generate_report(rows: int, ctx: Context = Depends()) -> int:
    started.set()
    try:
        for done in range(rows):
            await ctx.progress(done / rows, f"{done} of {rows} rows")
            await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        print(f"  generate_report: cancelled at attempt {ctx.attempt}; cleaning up")
        raise
    return rows


BATCHES = 500


def read_batches(table: str) -> Iterator[list[str]]:
    for number in range(BATCHES):
        time.sleep(0.02)  # stands in for a slow query
        yield [f"{table} row {number}"]


def write(batch: list[str]) -> None: ...


@app.task
def export_rows(table: str, ctx: Context = Depends()) -> int:
    sync_started.set()
    done = 0
    for batch in read_batches(table):
        if ctx.abort_requested:  # a thread cannot be killed: a sync task polls the flag
            print(f"  export_rows: abort_requested after {done} rows; stopping early")
            break
        write(batch)
        done += len(batch)
        ctx.progress_sync(done / BATCHES)
    return done  # discarded when aborted: the result already says "aborted"


async def main() -> None:
    async with app:
        print("1. A queued task, before any worker runs: removed, never runs")
        handle = await generate_report.kiq(42)
        outcome = await handle.abort()  # AbortOutcome.DEQUEUED
        result = await handle.wait_result()  # at once: stored by the abort
        print("  abort() ->", outcome.value, "| status:", result.status, "|", result.error)
        try:
            await handle.get()
        except TaskFailed as exc:
            print("  get() raised TaskFailed:", exc.error.type)

        print("2. A delayed task: the same")
        delayed = await generate_report.with_options(delay=60).kiq(10)
        print("  abort() ->", (await delayed.abort()).value)

        async with app.worker(concurrency=4):
            print("3. A running async task: cancelled in its worker, no retry")
            running = await generate_report.kiq(1000)
            await started.wait()
            await asyncio.sleep(0.2)
            state = await running.status()
            print(f"  while running: {state.status.value}, progress {state.progress:.3f}")
            asked = time.perf_counter()
            assert await running.abort() is AbortOutcome.SIGNALLED
            result = await running.wait_result(timeout=5)
            took = (time.perf_counter() - asked) * 1000
            print(f"  {result.status.value} after {took:.1f} ms, attempts={result.attempts}")

            print("4. A running sync task: its thread sees ctx.abort_requested")
            exporting = await export_rows.kiq("orders")
            await asyncio.to_thread(sync_started.wait)
            await asyncio.sleep(0.1)
            print("  abort() ->", (await exporting.abort()).value)
            result = await exporting.wait_result(timeout=5)
            print("  status:", result.status.value, "| return value:", result.return_value)
            await asyncio.sleep(0.1)  # let the thread print that it stopped

            print("5. Aborting a finished task changes nothing")
            done = await generate_report.kiq(2)
            assert await done.get(timeout=5) == 2
            print("  abort() ->", (await done.abort()).value)
            assert (await done.status()).status is TaskStatus.SUCCEEDED
        print("6. An id nobody knows:", (await app.abort("no-such-task")).value)


if __name__ == "__main__":
    asyncio.run(main())
