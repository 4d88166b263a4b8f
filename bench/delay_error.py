"""Delay error: how late a delayed task, or a retry after its backoff, starts.

    python bench/delay_error.py                       # memory, sqlite and redis; writes DELAYS.md
    python bench/delay_error.py --brokers redis --samples 50 --out -

For each broker, one worker in this process (default settings: fetch_wait 1 s) takes
``--samples`` tasks enqueued with ``delay`` drawn uniformly from 50-500 ms, one at a time
with the worker idle (the case a blocking fetch must wake up for), then as many tasks that
fail once and retry after a fixed backoff drawn the same way. The error of one sample is
the time the task (or its retry) started minus the time it was due, from ``time.time()``
in this one process. Reported: p50, p99 and max, in milliseconds. Needs Redis on
127.0.0.1:6379 (DB 15, keys under a fresh prefix, deleted after) for the redis row.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from conveyor import Conveyor, fixed

HERE = Path(__file__).resolve().parent


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(int(round(q * (len(ordered) - 1))), len(ordered) - 1)
    return ordered[index]


async def _measure(url: str, samples: int, rng: random.Random) -> dict[str, list[float]]:
    app = Conveyor(url, environ={}, log_tasks=False)
    started: dict[int, list[float]] = {}

    @app.task(name="bench:mark")
    async def mark(i: int) -> None:
        started.setdefault(i, []).append(time.time())

    backoffs = [rng.uniform(0.05, 0.5) for _ in range(samples)]

    def make_flaky(delay: float, i: int) -> None:
        @app.task(name=f"bench:flaky{i}", retries=1, backoff=fixed(delay))
        async def flaky() -> None:
            started.setdefault(10_000 + i, []).append(time.time())
            if len(started[10_000 + i]) == 1:
                raise RuntimeError("fail once")

    for i, delay in enumerate(backoffs):
        make_flaky(delay, i)
    errors: dict[str, list[float]] = {"delay": [], "retry": []}
    async with app, app.worker(concurrency=10):
        await asyncio.sleep(0.3)  # the worker is idle, in its blocking fetch
        for i in range(samples):
            delay = rng.uniform(0.05, 0.5)
            due = time.time() + delay
            handle = await mark.with_options(delay=delay).kiq(i)
            await handle.wait_result(timeout=10)
            errors["delay"].append((started[i][0] - due) * 1000)
        for i, delay in enumerate(backoffs):
            handle = await app.tasks[f"bench:flaky{i}"].kiq()
            await handle.wait_result(timeout=10)
            first, second = started[10_000 + i]
            # the retry is due `delay` after the first attempt failed (right after it began)
            errors["retry"].append((second - first - delay) * 1000)
    return errors


async def _run(brokers: list[str], samples: int, seed: int) -> list[tuple[str, str, list[float]]]:
    rng = random.Random(seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        prefix = f"bench-delay-{uuid.uuid4().hex[:8]}"
        urls = {
            "memory": "memory://",
            "sqlite": f"sqlite:///{tmp}/delays.db",
            "redis": f"redis://127.0.0.1:6379/15?prefix={prefix}",
        }
        for broker in brokers:
            errors = await _measure(urls[broker], samples, rng)
            for kind, values in errors.items():
                rows.append((broker, kind, values))
        if "redis" in brokers:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url("redis://127.0.0.1:6379/15")
            keys = [k async for k in client.scan_iter(f"*{prefix}*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()
    return rows


def _table(rows: list[tuple[str, str, list[float]]]) -> str:
    lines = [
        "| broker | what | samples | p50 ms | p99 ms | max ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for broker, kind, values in rows:
        lines.append(
            f"| {broker} | {kind} | {len(values)} | {statistics.median(values):.1f} | "
            f"{_percentile(values, 0.99):.1f} | {max(values):.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", default="memory,sqlite,redis")
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=str(HERE / "DELAYS.md"), help="'-' for stdout")
    args = parser.parse_args()
    brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    rows = asyncio.run(_run(brokers, args.samples, args.seed))
    command = "python bench/delay_error.py " + " ".join(sys.argv[1:])
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        "# Delay error\n\n"
        "How late a delayed task, or a retry after its backoff, starts (start minus due "
        "time), with one idle worker on default settings (`fetch_wait` 1 s). Delays and "
        "backoffs are drawn from 50-500 ms. Produced by `bench/delay_error.py` (its "
        "docstring says how).\n\n"
        f"Run: `{command.strip()}` on {stamp}.\n\n{_table(rows)}\n"
    )
    if args.out == "-":
        print(text)
    else:
        Path(args.out).write_text(text)
        print(text)


if __name__ == "__main__":
    main()
