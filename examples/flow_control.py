"""Flow control: a rate-limited API call per customer, a concurrency-limited render, a
unique sync, a debounced reindex and a notification that expires. Every limit is kept in
the broker and shared by every worker on every host; here one worker on the in-memory
broker shows them (the same code runs on SQLite, Redis, PostgreSQL and NATS).

Run: python examples/flow_control.py            (docs/flow-control.md)
"""

from __future__ import annotations

import asyncio
import time

from conveyor import Conveyor, TaskStatus

app = Conveyor("memory://", fetch_wait=0.1, log_tasks=False, permit_wait=0.1)
began = time.monotonic()
running = 0
most_running = 0


@app.task(rate_limit=("5/s", lambda customer_id: customer_id))
async def call_billing_api(customer_id: str, n: int) -> float:
    """At most 5 calls a second per customer (a bucket of 5, refilled at 5 a second)."""
    return round(time.monotonic() - began, 1)


@app.task(concurrency=2)
async def render_pdf(page: int) -> int:
    """At most 2 renders at once, across every worker."""
    global running, most_running
    running += 1
    most_running = max(most_running, running)
    await asyncio.sleep(0.1)
    running -= 1
    return page


@app.task(unique=lambda account: account)
async def sync_account(account: str) -> str:
    """At most one queued-or-running sync per account."""
    await asyncio.sleep(0.2)
    return f"synced {account}"


@app.task(debounce=(0.3, lambda doc_id: doc_id))
async def reindex(doc_id: str, version: int) -> int:
    """Of the enqueues within 0.3 s of each other, only the last runs."""
    return version


@app.task(expires=0.2)
async def send_reminder(user: str) -> str:
    """A reminder not sent within 0.2 s of its enqueue is not worth sending."""
    return f"reminded {user}"


async def main() -> None:
    async with app:
        stale = await send_reminder.kiq("ada")  # no worker yet: it will expire
        await asyncio.sleep(0.3)  # sleep: let the reminder's time pass
        async with app.worker(concurrency=10):
            # 10 calls for one customer: 5 at once, then one every 0.2 s
            calls = [await call_billing_api.kiq("cus_1", n) for n in range(10)]
            other = await call_billing_api.kiq("cus_2", 0)  # its own bucket: at once
            reasons: set[str] = set()
            while not reasons:  # a deferred call says why it waits
                states = [await c.status() for c in calls]
                reasons = {s.waiting for s in states if s.waiting}
            print(f"some calls wait: {reasons.pop()}")
            times = sorted([await c.get(timeout=10) for c in calls])
            print(f"cus_1 started at {times} s, cus_2 at {await other.get(timeout=5)} s")
            assert times[-1] - times[0] >= 0.9 and await other.get(timeout=5) - times[0] < 0.5

            pages = [await render_pdf.kiq(page) for page in range(6)]
            assert [await p.get(timeout=10) for p in pages] == list(range(6))
            print(f"rendered 6 pages, at most {most_running} at once")
            assert most_running == 2

            first, second = await sync_account.kiq("acme"), await sync_account.kiq("acme")
            assert first.task_id == second.task_id, "the second enqueue got the first's handle"
            print(await first.get(timeout=5), "once")

            edits = [await reindex.kiq("doc-7", version) for version in range(3)]
            outcomes = [(await e.wait_result(timeout=5)).status for e in edits]
            print(f"reindex after 3 quick edits: {[s.value for s in outcomes]}")
            assert outcomes == [TaskStatus.SUPERSEDED, TaskStatus.SUPERSEDED, TaskStatus.SUCCEEDED]

            result = await stale.wait_result(timeout=5)
            print(f"the reminder enqueued before any worker: {result.status.value}")
            assert result.status is TaskStatus.EXPIRED


if __name__ == "__main__":
    asyncio.run(main())
