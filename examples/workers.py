"""The in-process worker: startup/shutdown handlers and app.state, free-slot fetching,
graceful shutdown (finish within grace, release the rest uncharged, to run next), max_tasks.

Run: python examples/workers.py        (docs/workers.md)
"""

from __future__ import annotations

import asyncio

from conveyor import Conveyor

app = Conveyor("memory://", fetch_wait=0.1, grace=0.5)


class Pool:
    """Stands in for a connection pool (asyncpg's, say)."""

    async def fetch(self, sql: str) -> list[dict[str, str]]:
        return [{"sql": sql}]

    async def close(self) -> None:
        print("shutdown: pool closed")


async def create_pool() -> Pool:
    print("startup: pool opened")
    return Pool()


@app.on_startup
async def open_pool() -> None:  # sync or async; runs when a worker starts
    app.state["pool"] = await create_pool()


@app.on_shutdown
async def close_pool() -> None:  # runs after the worker stopped
    await app.state.pop("pool").close()


@app.task
async def query(sql: str) -> list[dict[str, str]]:
    return await app.state["pool"].fetch(sql)


ran: list[str] = []


@app.task
async def job(name: str, seconds: float) -> str:
    await asyncio.sleep(seconds)
    ran.append(name)
    return f"{name} slept {seconds}s"


async def main() -> None:
    async with app:
        async with app.worker():  # the handlers run around it
            print("query:", await (await query.kiq("select 1")).get(timeout=5))

        short = await job.kiq("short", 0.1)
        long = await job.kiq("long", 1.0)  # longer than grace (0.5 s)
        waiting = [await job.kiq(f"waiting-{i}", 0.1) for i in (1, 2, 3)]

        worker = app.worker(concurrency=2)  # fetches at most 2: the 3 others stay queued
        await worker.start()
        await asyncio.sleep(0.05)
        (depth,) = await app.broker.queue_depths()
        print(f"running={depth.running} ready={depth.ready}")

        await worker.stop()  # what SIGTERM does: stop fetching, grace, cancel and release
        print("short:", await short.get(timeout=1))
        state = await long.status()
        print(f"long: {state.status}, attempts charged: {state.attempts}")

        # max_tasks: a worker that stops after N tasks (the CLI's --max-tasks-per-child).
        # The released task kept its place in the queue, ahead of those published after it.
        ran.clear()
        async with app.worker(concurrency=1, max_tasks=3) as recycled:
            await recycled.wait_stopped()
        print("the next worker ran, in order:", ran)
        print("waiting-3 still", (await waiting[2].status()).status)


if __name__ == "__main__":
    asyncio.run(main())
