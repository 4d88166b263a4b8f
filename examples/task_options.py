"""Task options, per-call options, argument conversion and enqueue-time errors.

Run: python examples/task_options.py        (docs/tasks.md)
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from datetime import UTC, datetime, timedelta

import msgspec

from conveyor import Context, Conveyor, Depends, PayloadTooLarge

app = Conveyor("memory://", max_payload_bytes=10_000)


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Order(msgspec.Struct):
    id: uuid.UUID
    placed: datetime


@app.task(name="reports.build", queue="reports", priority=5, labels={"team": "data"})
async def build_report(n: int, ctx: Context = Depends()) -> str:
    return f"report {n} on queue {ctx.queue!r}, labels {dict(ctx.labels)}"


@app.task
async def move(p: Point, order: Order, by: timedelta) -> Point:
    # arguments arrive as the annotated types, not as dicts and strings
    assert isinstance(order.id, uuid.UUID) and isinstance(order.placed, datetime)
    return Point(p.x + int(by.total_seconds()), p.y)


@app.task
async def stamp(label: str) -> str:
    return label


@app.task
async def store(blob: object) -> None: ...


async def main() -> None:
    async with app, app.worker(concurrency=4, queues=["default", "reports"]):
        print(await (await build_report.kiq(1)).get(timeout=5))

        order = Order(uuid.uuid4(), datetime.now(UTC))
        point = await (await move.kiq(Point(1, 2), order, timedelta(seconds=3))).get(timeout=5)
        print("converted return value:", point)

        later = await stamp.with_options(delay=0.2, priority=9).kiq("delayed 0.2 s")
        print((await later.status()).status, "->", await later.get(timeout=5))

        first = await build_report.with_options(key="report-42").kiq(42)
        again = await build_report.with_options(key="report-42").kiq(42)
        print("same idempotency key, same task:", first.task_id == again.task_id)

        mine = await stamp.with_options(task_id="my-own-id").kiq("chosen id")
        print(mine.task_id, "->", await mine.get(timeout=5))

        handles = await app.enqueue_many([(stamp, (f"batch {i}",), {}) for i in range(3)])
        print([await h.get(timeout=5) for h in handles])

        try:
            await build_report.kiq("42")  # type: ignore[arg-type]
        except TypeError as exc:
            print("TypeError:", exc)
        try:
            await store.kiq(threading.Lock())
        except TypeError as exc:
            print("TypeError:", exc)
        try:
            await stamp.kiq("x" * 20_000)
        except PayloadTooLarge as exc:
            print("PayloadTooLarge:", exc)


if __name__ == "__main__":
    asyncio.run(main())
