"""Runs in bench/.venvs/conveyor: the chord benchmark (bench/chord.py) for Conveyor.

Worker: ``conveyor worker peers.chord_conveyor_app:app``. Producer: ``python -m
peers.chord_conveyor_app N`` sends a chord of N members (each returns its index) and a
callback that receives their results, in member order, and prints what it measured as
one JSON line."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time

from conveyor import Conveyor, chord

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
OUT = os.environ.get("BENCH_OUT", ".")

app = Conveyor(f"{URL}?prefix=chord", result_ttl=300.0, log_tasks=False, fetch_wait=1.0)


@app.task(name="chord_member")
async def member(index: int) -> int:
    return index


@app.task(name="chord_done")
async def done(values: list[int]) -> list[int]:
    ordered = values == list(range(len(values)))
    with open(os.path.join(OUT, f"callback-{os.getpid()}.jsonl"), "a") as ledger:
        ledger.write(json.dumps({"n": len(values), "ordered": ordered}) + "\n")
    return [len(values), int(ordered)]


@app.task(name="chord_warm")
async def warm() -> int:
    return 1


async def produce(n: int) -> dict[str, object]:
    async with app:
        await (await warm.kiq()).get(timeout=60)  # the worker is up and connected
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.monotonic()
        handle = await chord((member.s(i) for i in range(n)), done.s()).kiq()
        sent = time.monotonic()
        count, ordered = await handle.get(timeout=900)
        ended = time.monotonic()
    return {
        "send_s": sent - started,
        "total_s": ended - started,
        "n": count,
        "ordered": bool(ordered),
        "producer_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "producer_rss_growth_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(produce(int(sys.argv[1])))), flush=True)
