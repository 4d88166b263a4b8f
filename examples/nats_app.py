"""The NATS JetStream broker, deployed as one image that runs the API, the worker or both
(RUN_MODE), with results in JetStream KV or in Redis.

Needs a NATS server with JetStream (nats-server -js) and the extra:
pip install 'conveyor-tasks[nats]'. NATS_URL (default nats://127.0.0.1:4222) and
REDIS_URL (unset: results stay in NATS) come from the environment, as in the service
this mirrors. RUN_MODE picks the role of this process:

- ``api``: enqueue only (the FastAPI side: ``.kiq()`` and ``wait_result``);
- ``worker``: run ``conveyor worker`` in this process until stopped;
- ``both`` (default here): a worker inside the app's own event loop, as a FastAPI
  lifespan would start it, then enqueue and wait.

Everything goes under a fresh prefix, deleted at the end: the NATS streams and buckets
(``?prefix=`` on NATS_URL) and, with REDIS_URL, the result keys (the same ``?prefix=`` on
REDIS_URL). Set NATS_PREFIX to share a fixed prefix with other processes (an ``api`` and a
``worker``); then nothing is deleted.

Run: python examples/nats_app.py        (docs/nats.md)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid

from conveyor import BrokerUnavailable, Conveyor, TaskFailed, fixed

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
REDIS_URL = os.environ.get("REDIS_URL")  # e.g. redis://127.0.0.1:6379/0
RUN_MODE = os.environ.get("RUN_MODE", "both")
PREFIX = os.environ.get("NATS_PREFIX", f"example-{uuid.uuid4().hex[:8]}")


def _with_prefix(url: str) -> str:
    """``url`` with this app's ``?prefix=`` (results on Redis are namespaced too)."""
    return f"{url}{'&' if '?' in url else '?'}prefix={PREFIX}"


RESULTS_URL = _with_prefix(REDIS_URL) if REDIS_URL else None
app = Conveyor(_with_prefix(NATS_URL), results=RESULTS_URL)


@app.task
async def send_email(to: str) -> str:
    return f"sent to {to}"


@app.task(retries=1, backoff=fixed(0.1))
async def flaky(n: int) -> int:
    raise ConnectionError(f"upstream down for {n}")


async def api_side() -> None:
    """What the API does: enqueue, then (here) wait for the outcome."""
    handle = await send_email.kiq("ada@example.com")
    print("result:", await handle.get(timeout=10))
    later = await send_email.with_options(delay=0.3).kiq("grace@example.com")
    print("delayed:", (await later.status()).status, "->", await later.get(timeout=10))
    try:
        await (await flaky.kiq(7)).get(timeout=10)
    except TaskFailed as exc:
        print("failed after its retries:", exc.error.type if exc.error else exc)


async def main() -> None:
    try:
        async with app:
            if RUN_MODE == "api":
                await api_side()
            elif RUN_MODE == "worker":  # `conveyor worker examples.nats_app:app` does the same
                async with app.worker(concurrency=10):
                    await asyncio.Event().wait()
            else:
                async with app.worker(concurrency=10):
                    await api_side()
                    depths = await app.broker.queue_depths()  # type: ignore[attr-defined]
                    print("dead letters:", [(d.queue, d.dead) for d in depths])
    except BrokerUnavailable as exc:
        raise SystemExit(f"start NATS with JetStream first (nats-server -js): {exc}") from None
    finally:
        if "NATS_PREFIX" not in os.environ:  # our own fresh prefix: leave nothing behind
            await delete_everything()


async def delete_everything() -> None:
    """Delete the streams and buckets of our prefix, and its result keys on Redis."""
    from conveyor.brokers.nats.testing import delete_namespace

    with contextlib.suppress(BrokerUnavailable):  # no server: nothing was created
        await delete_namespace(_with_prefix(NATS_URL))
    if REDIS_URL:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            # result keys use "<prefix>:", queue keys (none here) "{<prefix>:"
            keys = [k async for k in client.scan_iter(match=f"{PREFIX}:*")]
            keys += [k async for k in client.scan_iter(match=f"{{{PREFIX}:*")]
            if keys:
                await client.delete(*keys)
            print("redis result keys deleted:", len(keys))
        finally:
            await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
