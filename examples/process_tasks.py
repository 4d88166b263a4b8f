"""CPU-bound tasks in a process pool: `@app.task(runner="process")`.

What it shows: a plain `def` task running in the worker's pool processes, not in a
thread, so that CPU-bound calls run in parallel instead of taking turns on the GIL; its
arguments and result crossing over through the wire codec (a dataclass argument arrives
as a dataclass); a timeout that kills the process running the task, and the pool
starting a new one; an exception that keeps its class, so `retry_on` sees it. Takes a
few seconds; the `memory://` broker keeps nothing.

Run: python examples/process_tasks.py        (docs/process-tasks.md)
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from conveyor import Conveyor, TaskStatus

# Two processes in the pool (process_pool_size; 0, the default, means one per CPU).
app = Conveyor("memory://", process_pool_size=2)


@dataclass
class Span:
    start: int
    stop: int


# A pool process imports this module by name (process_tasks) to find the function: a
# process task is a def at the top level of a module, and a script that starts a worker
# keeps that under `if __name__ == "__main__":`, as with any multiprocessing code.
@app.task(runner="process")
def count_primes(span: Span) -> dict[str, int]:
    """Pure Python, CPU-bound: threads would take turns on the GIL here."""
    found = sum(
        1
        for n in range(max(span.start, 2), span.stop)
        if all(n % d for d in range(2, int(n**0.5) + 1))
    )
    return {"primes": found, "pid": os.getpid()}


@app.task(runner="process", timeout=0.5)
def runaway() -> None:
    """Never returns: only killing its process stops a loop like this."""
    while True:
        pass


@app.task(runner="process", retries=3, retry_on=ConnectionError, backoff=0.2)
def flaky(fail_until: float) -> str:
    if time.time() < fail_until:
        raise ConnectionError("not yet")  # a ConnectionError in the worker too: retried
    return "done"


async def main() -> None:
    async with app, app.worker(concurrency=4):
        # the first call starts the pool; the pool keeps its processes for later calls
        first = await (await count_primes.kiq(Span(0, 20_000))).get(timeout=60)
        print(f"{first['primes']} primes below 20,000, counted in process {first['pid']}")
        assert first["pid"] != os.getpid()

        # four spans at once: the pool's two processes each take one, then the next
        started = time.perf_counter()
        handles = [await count_primes.kiq(Span(n, n + 40_000)) for n in range(0, 160_000, 40_000)]
        results = [await handle.get(timeout=60) for handle in handles]
        pids = sorted({r["pid"] for r in results})
        took = time.perf_counter() - started
        print(f"4 spans in {took:.2f} s, in processes {pids}")

        # a timeout kills the process that runs the task; the pool starts another
        result = await (await runaway.kiq()).wait_result(timeout=60)
        assert result.status is TaskStatus.FAILED
        print(f"runaway: {result.error}")
        after = await (await count_primes.kiq(Span(0, 100))).get(timeout=60)
        print(f"after the kill: {after['primes']} primes below 100, in process {after['pid']}")

        # the exception crosses over with its class, so retry_on sees a ConnectionError
        result = await (await flaky.kiq(time.time() + 0.3)).wait_result(timeout=60)
        assert result.status is TaskStatus.SUCCEEDED
        print(f"flaky: {result.return_value!r} after {result.attempts} attempt(s)")


if __name__ == "__main__":
    asyncio.run(main())
