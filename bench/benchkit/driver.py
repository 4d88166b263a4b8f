"""The producer side of a peer, run inside the peer's venv.

A peer's app module defines ``App``, a :class:`PeerApp` subclass; the orchestrator runs
``python -m benchkit peers.<peer>_app <command> ...`` (the app module is imported
under its own name, never run as ``__main__``, so task names match the worker's) with:

``enqueue --start S --n N --sleep SECONDS [--timed T]``
    Enqueue tasks S..S+N-1 and print ``{"seconds": ..., "n": T, "mode": ...}``. The clock
    runs from the first enqueue call to the T-th returning (connections are opened
    before); the rest of the backlog is then filled untimed, sync APIs from 4 threads.
    Mode: ``batch`` if the app implements :meth:`PeerApp.enqueue_many`
    (the library's own batch/pipeline API), else ``concurrent`` for an async
    :meth:`PeerApp.enqueue_one` (``in_flight`` calls awaited at once, as an async web
    app would), else ``sequential`` (a sync API called in a loop).
``latency --start S --n N --gap-ms G --seed R``
    Enqueue one task at a time with random gaps of 0.5..1.5 x G ms and print the
    ``now()`` taken right before each enqueue call, by task id.
``concurrent --n N --in-flight K``
    ``K`` lanes await :meth:`PeerApp.enqueue_one` (one task per call, as concurrent web
    requests each enqueue their own) until ``N`` are enqueued; print ``{"seconds": ...,
    "n": N}`` (bench/kiq.py).
``prepare``
    Reset the backend's state (only used by non-Redis peers) and print facts as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import random
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchkit.config import CONFIG, Config
from benchkit.ledger import now

FILL_THREADS = 4


class PeerApp:
    """What a peer implements for the producer side. Methods may be sync or async."""

    batch_size: int = 1000
    """Chunk size passed to :meth:`enqueue_many`."""
    in_flight: int = 100
    """Concurrent enqueue calls when only an async :meth:`enqueue_one` exists."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def start(self) -> Any:
        """Open connections (not timed)."""

    def stop(self) -> Any:
        """Close connections (not timed)."""

    def enqueue_one(self, task_id: int, sleep: float) -> Any:
        raise NotImplementedError

    def enqueue_many(self, task_ids: Sequence[int], sleep: float) -> Any:
        raise NotImplementedError

    def after_enqueue(self) -> Any:
        """Called after the whole backlog is in (untimed): settle the backend the way a
        running deployment would be (e.g. ANALYZE a freshly loaded SQL table)."""

    def prepare(self) -> Any:
        """Reset backend state before a run; return facts (e.g. server version)."""
        return {}


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    res = fn(*args)
    if inspect.isawaitable(res):
        res = await res
    return res


def _has_batch(app: PeerApp) -> bool:
    return type(app).enqueue_many is not PeerApp.enqueue_many


async def _run_mode(app: PeerApp, ids: range, sleep: float, mode: str) -> None:
    if mode == "batch":
        for i in range(0, len(ids), app.batch_size):
            await _call(app.enqueue_many, ids[i : i + app.batch_size], sleep)
    elif mode == "concurrent":
        it = iter(ids)

        async def lane() -> None:
            for i in it:
                await app.enqueue_one(i, sleep)

        await asyncio.gather(*(lane() for _ in range(min(app.in_flight, len(ids)))))
    elif mode == "threads":  # untimed backlog fill for sync APIs
        with ThreadPoolExecutor(FILL_THREADS) as pool:
            list(pool.map(lambda i: app.enqueue_one(i, sleep), ids))
    else:
        for i in ids:
            app.enqueue_one(i, sleep)


async def _enqueue(app: PeerApp, start: int, n: int, sleep: float,
                   timed: int) -> dict[str, Any]:
    """Enqueue ``n`` tasks; time the first ``timed`` of them in the app's normal mode, then
    fill the rest of the backlog as fast as the API allows (untimed)."""
    ids = range(start, start + n)
    timed = min(n, timed or n)
    await _call(app.start)
    if _has_batch(app):
        mode = "batch"
    elif inspect.iscoroutinefunction(app.enqueue_one):
        mode = "concurrent"
    else:
        mode = "sequential"
    t0 = now()
    await _run_mode(app, ids[:timed], sleep, mode)
    seconds = now() - t0
    if timed < n:
        await _run_mode(app, ids[timed:], sleep, "threads" if mode == "sequential" else mode)
    await _call(app.after_enqueue)
    await _call(app.stop)
    return {"seconds": seconds, "n": timed, "mode": mode}


async def _concurrent(app: PeerApp, n: int, in_flight: int) -> dict[str, Any]:
    if not inspect.iscoroutinefunction(app.enqueue_one):
        raise SystemExit(f"{type(app).__module__}: enqueue_one is not async")
    app.in_flight = in_flight
    await _call(app.start)
    t0 = now()
    await _run_mode(app, range(n), 0.0, "concurrent")
    seconds = now() - t0
    await _call(app.stop)
    return {"seconds": seconds, "n": n}


async def _latency(app: PeerApp, start: int, n: int, gap_ms: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    await _call(app.start)
    enqueued: dict[int, float] = {}
    for i in range(start, start + n):
        await asyncio.sleep(gap_ms * rng.uniform(0.5, 1.5) / 1000)
        enqueued[i] = now()
        await _call(app.enqueue_one, i, 0.0)
    await _call(app.stop)
    return {"enqueued": enqueued}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchkit")
    parser.add_argument("app_module", help="e.g. peers.taskiq_app (must define App)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("enqueue")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--timed", type=int, default=0, help="time only the first N (0: all)")
    p = sub.add_parser("latency")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--gap-ms", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("concurrent")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--in-flight", type=int, default=32)
    sub.add_parser("prepare")
    args = parser.parse_args(argv)

    app_cls: type[PeerApp] = importlib.import_module(args.app_module).App
    app = app_cls(CONFIG)
    if args.cmd == "enqueue":
        out = asyncio.run(_enqueue(app, args.start, args.n, args.sleep, args.timed))
    elif args.cmd == "concurrent":
        out = asyncio.run(_concurrent(app, args.n, args.in_flight))
    elif args.cmd == "latency":
        out = asyncio.run(_latency(app, args.start, args.n, args.gap_ms, args.seed))
    else:
        out = asyncio.run(_call(app.prepare)) or {}
    sys.stdout.write("BENCH-JSON " + json.dumps(out) + "\n")
    sys.stdout.flush()
