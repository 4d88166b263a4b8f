"""The Redis Streams broker: the quickstart on `redis://`, plus what Redis adds: a key
prefix per app, the key layout, and state that any process reaching the server shares.

Needs a Redis server (6.2 or newer) and the extra: pip install 'conveyor-tasks[redis]'.
Set EXAMPLE_REDIS_URL to point elsewhere than redis://127.0.0.1:6379/0. Everything goes
under a fresh `?prefix=`, and every key with that prefix is deleted at the end. If the
server runs without persistence, the broker logs a warning at connect: that is expected
on a development server.

Run: python examples/redis_quickstart.py        (docs/brokers.md)
"""

from __future__ import annotations

import asyncio
import os
import uuid

import redis.asyncio as aioredis

from conveyor import BrokerUnavailable, Conveyor, TaskFailed, fixed

SERVER = os.environ.get("EXAMPLE_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = f"example-{uuid.uuid4().hex[:8]}"  # namespaces every key this app creates

app = Conveyor(f"{SERVER}?prefix={PREFIX}")  # results go to the same server and prefix


@app.task
async def add(a: int, b: int) -> int:
    return a + b


@app.task(retries=2, backoff=fixed(0.1))
async def unreliable(n: int) -> int:
    raise ConnectionError(f"upstream down for {n}")


async def main() -> None:
    async with app, app.worker(concurrency=10):
        print("get():", await (await add.kiq(2, 3)).get(timeout=5))

        later = await add.with_options(delay=0.5).kiq(1, 1)
        print("delayed task is", (await later.status()).status, "->", await later.get(timeout=5))

        first = await add.with_options(key="sum-1-2").kiq(1, 2)
        again = await add.with_options(key="sum-1-2").kiq(1, 2)
        print("same idempotency key, same task:", first.task_id == again.task_id)

        failing = await unreliable.kiq(7)
        try:
            await failing.get(timeout=5)
        except TaskFailed as exc:
            print("unreliable:", exc.error.type, exc.error.message)

        # Another app on the same URL (another process, in real life) sees the same state.
        other = Conveyor(f"{SERVER}?prefix={PREFIX}")
        async with other:
            (entry,) = await other.broker.dead_letters()
            print(f"DLQ seen from a second app: attempts={entry.attempts} {entry.reason}")
            for depth in await other.broker.queue_depths():
                print(
                    f"queue {depth.queue}: ready={depth.ready} delayed={depth.delayed} "
                    f"running={depth.running} dead={depth.dead}"
                )

    await show_and_delete_keys()


def key_shape(key: str) -> str:
    """`{P:default}:job:<task id>` for `{example-1a2b3c4d:default}:job:9f1c...`."""
    head, _, last = key.replace(PREFIX, "P").rpartition(":")
    return f"{head}:<task id>" if len(last) == 32 else f"{head}:{last}"


async def show_and_delete_keys() -> None:
    """Queue keys share the hash tag {prefix:queue}; results and heartbeats use prefix:."""
    client = aioredis.Redis.from_url(SERVER)
    try:
        keys = sorted(
            [k async for k in client.scan_iter(match=f"{{{PREFIX}:*")]
            + [k async for k in client.scan_iter(match=f"{PREFIX}:*")]
        )
        print(f"{len(keys)} keys under the prefix; their shapes (P = {PREFIX}):")
        for shape in sorted({key_shape(k.decode()) for k in keys}):
            print("  ", shape)
        if keys:
            await client.delete(*keys)
        print("deleted them; left:", len([k async for k in client.scan_iter(match=f"*{PREFIX}*")]))
    finally:
        await client.aclose()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except BrokerUnavailable as exc:
        raise SystemExit(f"this example needs Redis: {exc}") from None
