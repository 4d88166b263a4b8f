"""Task options, per-call options, handles, argument conversion, enqueue_many and
enqueue-time errors.

Run: python examples/task_options.py        (docs/tasks.md, docs/workers.md)
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec

from conveyor import Context, Conveyor, Depends, PayloadTooLarge, exponential

app = Conveyor("memory://", max_payload_bytes=10_000)


@app.task(
    name="process_report",  # default: "module:qualname"
    queue="reports",  # default: settings.default_queue ("default")
    retries=3,  # runs after the first; max attempts = 4
    retry_on=(ConnectionError, TimeoutError),
    backoff=exponential(base=1.0, cap=300.0),
    timeout=60,  # seconds per attempt
    result_ttl=3600,  # keep the result one hour
    priority=5,  # higher runs first within a queue
    labels={"team": "data"},
)
async def process_report(report_id: int, ctx: Context = Depends()) -> str:
    return f"report {report_id} on queue {ctx.queue!r}, labels {dict(ctx.labels)}"


@dataclass
class Point:
    x: int
    y: int


class Order(msgspec.Struct):
    id: uuid.UUID
    placed: datetime


@app.task
async def move(p: Point, order: Order, by: timedelta) -> Point:
    # arguments arrive as the annotated types, not as dicts and strings
    assert isinstance(order.id, uuid.UUID)  # not a str
    assert isinstance(order.placed, datetime)
    return Point(p.x + int(by.total_seconds()), p.y)


@app.task
async def send_email(to: str, template: str = "default") -> str:
    return f"{template} email to {to}"


@app.task
async def store(blob: object) -> None: ...


async def main() -> None:
    async with app, app.worker(concurrency=10, queues=["default", "reports"]):
        print(await (await process_report.kiq(1)).get(timeout=5))

        print("per-call options:")
        later = await process_report.with_options(delay=10).kiq(42)  # run in >= 10 s
        in_5_min = await process_report.with_options(delay=timedelta(minutes=5)).kiq(42)
        in_2030 = await process_report.with_options(eta=datetime(2030, 1, 1, tzinfo=UTC)).kiq(42)
        urgent = await process_report.with_options(priority=9, queue="urgent").kiq(42)
        for name, handle in [("delay", later), ("eta", in_2030), ("queue=urgent", urgent)]:
            print(f"  {name}: {(await handle.status()).status}")  # not due / not served here
        for handle in (later, in_5_min, in_2030, urgent):
            await handle.abort()

        first = await process_report.with_options(key="report-42").kiq(42)  # deduplicated
        again = await process_report.with_options(key="report-42").kiq(42)
        print("  same idempotency key, same task:", first.task_id == again.task_id)
        mine = await process_report.with_options(task_id="report-42-run-1").kiq(42)
        print(f"  task_id={mine.task_id!r}")
        tagged = await process_report.with_options(labels={"tenant": "acme"}).kiq(42)
        print("  labels:", await tagged.get(timeout=5))

        print("a handle:")
        handle = await process_report.kiq(7)
        task_id = handle.task_id  # str
        result = await handle.wait_result(timeout=30)  # Result[R]; ResultTimeout after 30 s
        value = await handle.get(timeout=30)  # R; TaskFailed if the task did not succeed
        result = await handle.result()  # stored result now; ResultMissing if none
        state = await handle.status()  # TaskState
        outcome = await handle.abort()  # AbortOutcome: FINISHED, it has run
        print(f"  {result.status}, {value!r}, {state.status}, abort: {outcome.value}")
        handle = app.handle(task_id, task="process_report")  # a handle from an id you stored
        print("  from its id:", await handle.get(timeout=5))

        order = Order(uuid.uuid4(), datetime.now(UTC))
        point = await (await move.kiq(Point(1, 2), order, timedelta(seconds=3))).get(timeout=5)
        print("converted return value:", point)

        calls = [
            (send_email, ("a@example.com",), {}),
            (send_email, ("b@example.com",), {"template": "welcome"}),
        ]
        handles = await app.enqueue_many(calls)  # one broker call
        print("enqueue_many:", [await h.get(timeout=5) for h in handles])

        try:
            await process_report.kiq("42")  # type: ignore[arg-type]
        except TypeError as exc:
            print("TypeError:", exc)
        try:
            await store.kiq(threading.Lock())
        except TypeError as exc:
            print("TypeError:", exc)
        try:
            await send_email.kiq("x" * 20_000)
        except PayloadTooLarge as exc:
            print("PayloadTooLarge:", exc)


if __name__ == "__main__":
    asyncio.run(main())
