"""Where a no-op task's microseconds go: worker CPU and Redis server time per task.

    python bench/hotpath.py                      # 20,000 tasks, results stored, Markdown out
    python bench/hotpath.py --n 50000 --out bench/PROFILE.md

Runs in the project's own environment (it imports Conveyor), against Redis DB 12 by
default (it is FLUSHDB'ed; run.py's 15 and startup.py's 13 are left alone). One worker in
this process at concurrency 100 drains a backlog enqueued first, three times: the median
run gives the worker's CPU per task (``time.process_time``) and the Redis server's CPU per
task (``INFO cpu``, with ``INFO commandstats`` reset before the drain: every command it
ran, scripts and the commands inside them); a fourth run under cProfile splits the
worker's time by function. cProfile slows every Python call, so its column is a share of
the worker's time, not a duration.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from datetime import UTC, datetime
from typing import Any

from conveyor import Conveyor


def _app(url: str) -> tuple[Conveyor, Any, asyncio.Event, list[int]]:
    app = Conveyor(url, result_ttl=300.0, fetch_wait=1.0, environ={})
    done: list[int] = [0]
    finished = asyncio.Event()

    @app.task(name="bench_task")
    async def bench_task(i: int) -> int:
        done[0] += 1
        if done[0] >= target[0]:
            finished.set()
        return i

    target = [0]
    return app, (bench_task, target), finished, done


async def _drain(url: str, n: int, profile: bool) -> dict[str, Any]:
    app, (task, target), finished, _ = _app(url)
    target[0] = n
    async with app:
        client = app.broker.client  # type: ignore[attr-defined]
        await client.flushdb()
        for start in range(0, n, 1000):
            await app.enqueue_many([(task, (i,), {}) for i in range(start, min(start + 1000, n))])
        await client.config_resetstat()
        before = await client.info("cpu")
        profiler = cProfile.Profile() if profile else None
        wall, cpu = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        async with app.worker(concurrency=100):
            await finished.wait()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if profiler is not None:
            profiler.disable()
        stats = await client.info("commandstats")
        after = await client.info("cpu")
        await client.flushdb()
    server = sum(after[k] - before[k] for k in ("used_cpu_sys", "used_cpu_user"))
    return {"wall": wall, "cpu": cpu, "redis": stats, "server": server, "profile": profiler}


def _redis_rows(stats: dict[str, Any], n: int) -> list[tuple[str, int, float]]:
    rows = [
        (name.removeprefix("cmdstat_"), int(v["calls"]), float(v["usec"]) / n)
        for name, v in stats.items()
        if not name.startswith("cmdstat_config") and v["calls"]
    ]
    rows.sort(key=lambda r: -r[2])
    return rows


def _profile_rows(profiler: cProfile.Profile, limit: int) -> list[tuple[str, float]]:
    stats = pstats.Stats(profiler)
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in entries.values())
    rows = []
    for (path, line, func), (_, _, tottime, _, _) in entries.items():
        where = path.split("/src/", 1)[-1].split("site-packages/", 1)[-1]
        rows.append((f"{where}:{line}({func})", 100.0 * tottime / total))
    rows.sort(key=lambda r: -r[1])
    return rows[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    url = f"{args.redis_url}?prefix=bench-profile"
    runs = [asyncio.run(_drain(url, args.n, False)) for _ in range(args.runs)]
    runs.sort(key=lambda r: r["cpu"])
    median = runs[len(runs) // 2]
    profiled = asyncio.run(_drain(url, args.n, True))
    rows = _redis_rows(median["redis"], args.n)
    redis_us = median["server"] / args.n * 1e6
    n = args.n
    rates = ", ".join(f"{n / r['wall']:,.0f}" for r in runs)
    cpus = ", ".join(f"{r['cpu'] / n * 1e6:.1f}" for r in runs)
    lines = [
        f"## Profile of a no-op task ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"`python bench/hotpath.py --n {n} --runs {args.runs}`: one worker in-process, "
        "concurrency 100, results stored, task counters on (the defaults), Redis "
        f"{args.redis_url}. Median of {args.runs} drains by worker CPU.",
        "",
        f"- drain: {n / median['wall']:,.0f} tasks/s in this process (runs: {rates})",
        f"- worker CPU per task: **{median['cpu'] / n * 1e6:.1f} µs** (runs: {cpus})",
        f"- Redis server CPU per task: **{redis_us:.1f} µs** (`INFO cpu`, user + system, "
        "over the drain: commands, scripts and networking)",
        "",
        "| Redis command | calls | µs per task |",
        "|---|---:|---:|",
        *[f"| {c} | {calls:,} | {us:.2f} |" for c, calls, us in rows[:14]],
        "",
        "`INFO commandstats` over the drain: `evalsha` is the scripts (fetch.lua, ack.lua) "
        "including the commands they run, which are listed again on their own rows (with "
        "the few sent outside a script: the blocking `xreadgroup`, heartbeats, counters).",
        "",
        "| worker function (cProfile, own time) | share of the worker's time |",
        "|---|---:|",
        *[f"| `{f}` | {share:.1f}% |" for f, share in _profile_rows(profiled["profile"], 18)],
        "",
    ]
    text = "\n".join(lines)
    if args.out:
        with open(args.out, "w") as out:
            out.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
