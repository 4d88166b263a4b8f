"""Runs in bench/.venvs/celery: the chord benchmark (bench/chord.py) for Celery, with the
Redis transport and the Redis result backend (a chord needs one).

Worker: ``celery -A peers.chord_celery_app worker -Q bench``. Producer: ``python -m
peers.chord_celery_app N`` sends a chord of N members (each returns its index) and a
callback that receives their results, in member order, and prints what it measured as
one JSON line."""

from __future__ import annotations

import json
import os
import resource
import sys
import time

from celery import Celery, chord

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
OUT = os.environ.get("BENCH_OUT", ".")

app = Celery("chordbench", broker=URL, backend=URL)
app.conf.update(
    task_default_queue="bench",
    result_expires=300,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="chord_member")
def member(index: int) -> int:
    return index


@app.task(name="chord_done")
def done(values: list[int]) -> list[int]:
    ordered = values == list(range(len(values)))
    with open(os.path.join(OUT, f"callback-{os.getpid()}.jsonl"), "a") as ledger:
        ledger.write(json.dumps({"n": len(values), "ordered": ordered}) + "\n")
    return [len(values), int(ordered)]


@app.task(name="chord_warm")
def warm() -> int:
    return 1


def produce(n: int) -> dict[str, object]:
    warm.apply_async().get(timeout=60)  # the worker is up and connected
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    result = chord((member.s(i) for i in range(n)), done.s()).apply_async()
    sent = time.monotonic()
    count, ordered = result.get(timeout=900)
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
    print(json.dumps(produce(int(sys.argv[1]))), flush=True)
