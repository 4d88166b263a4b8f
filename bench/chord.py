#!/usr/bin/env python3
"""The chord benchmark: a chord of 10,000 members on Redis, Conveyor beside Celery, in the
same run, on the same Redis (issue 21: fan-in without polling, without a slot held, with
bounded memory in the producer and the broker).

    python bench/chord.py --runs 3 --peers conveyor,celery --out bench/RESULTS-chord.md \
        --analysis bench/ANALYSIS-chord.md
    python bench/chord.py --members 2000 --runs 1          # a smoke test
    python bench/chord.py --render bench/out/chord-<stamp>/raw.json --out ...

Each peer runs in the virtualenv ``bench/run.py`` made for it (``--venvs`` to use others;
``bench/run.py --setup-only --peers conveyor,celery`` makes them). A run of one peer:

1. ``FLUSHDB`` on the benchmark DB (15 by default; never DB 0).
2. Start one worker process with 100 concurrent slots (Conveyor: ``conveyor worker
   --workers 1 --concurrency 100``; Celery: ``-P threads -c 100``, and, as
   ``celery-prefork``, its default prefork pool of one child per CPU; its Redis result
   backend on, which a chord needs), and wait for it to run a warm-up task.
3. The producer, a process of its own, sends ``chord(member.s(i) for i in range(N),
   done.s())`` from a generator, and waits for the callback's result: *send* is the time
   the send call took, *total* the time from the send to the callback's result in the
   producer (every member run, fanned in, the callback run). The callback checks it got
   N results in member order, and writes a line to a ledger: it must run exactly once.
4. Meanwhile Redis' ``used_memory`` is sampled every 50 ms: *Redis peak* is its highest
   value above the value before the send; *Redis after* what stays once the callback ran
   (results kept for their TTL, 5 min for both).
5. *Producer RSS* is the producer's peak resident memory (``ru_maxrss``), and its growth
   during the send; *worker RSS* the worker processes' peak (``VmHWM``), summed.

Standard library only, as bench/run.py.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from harness.procs import ProcessGroup  # noqa: E402
from harness.redisc import Redis  # noqa: E402

PEERS: dict[str, dict[str, Any]] = {
    "conveyor": {
        "label": "**conveyor** (Redis Streams), 100",
        "venv": "conveyor",
        "module": "peers.chord_conveyor_app",
        "worker": lambda bin_: [bin_("conveyor"), "worker", "peers.chord_conveyor_app:app",
                                "--workers", "1", "--concurrency", "100",
                                "--log-level", "WARNING"],
        "fan_in": "each member's ack joins its group's barrier in the same Lua script "
                  "(HSETNX of its outcome, HINCRBY); the script that completes it "
                  "publishes the callback",
    },
    "celery": {
        "label": "celery (redis, Redis result backend), threads, 100",
        "venv": "celery",
        "module": "peers.chord_celery_app",
        "worker": lambda bin_: [bin_("celery"), "-A", "peers.chord_celery_app", "worker",
                                "-P", "threads", "-c", "100", "-Q", "bench",
                                "--loglevel", "WARNING", "-n", "chord@%h"],
        "fan_in": "each member's result is stored, then its chord counter INCR'd by the "
                  "result backend (on_chord_part_return); the one that reaches the size "
                  "reads the results and sends the callback",
    },
    "celery-prefork": {
        "label": "celery (redis, Redis result backend), prefork, 2 (its default here)",
        "venv": "celery",
        "module": "peers.chord_celery_app",
        "worker": lambda bin_: [bin_("celery"), "-A", "peers.chord_celery_app", "worker",
                                "-Q", "bench", "--loglevel", "WARNING", "-n", "chord@%h"],
        "fan_in": "as celery above",
    },
}


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


class MemorySampler(threading.Thread):
    """Samples Redis' used_memory every ``every`` seconds until stopped."""

    def __init__(self, host: str, port: int, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.redis = Redis(host, port)
        self.every = every
        self.peak = 0
        self.done = threading.Event()

    def used(self) -> int:
        info = self.redis.execute("INFO", "memory").decode()
        for line in info.splitlines():
            if line.startswith("used_memory:"):
                return int(line.split(":")[1])
        raise RuntimeError("no used_memory in INFO memory")

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, self.used())
            time.sleep(self.every)  # sleep: the sampling interval

    def stop(self) -> None:
        self.done.set()
        self.join()


def one_run(peer: str, venvs: Path, members: int, redis_url: str, out: Path) -> dict[str, Any]:
    spec = PEERS[peer]
    venv = venvs / spec["venv"]
    parts = urlsplit(redis_url)
    host, port, db = parts.hostname or "127.0.0.1", parts.port or 6379, int(parts.path[1:] or 0)
    if db == 0:
        raise SystemExit("refusing to FLUSHDB DB 0: give --redis-url a dedicated DB")
    with Redis(host, port, db) as redis:
        redis.execute("FLUSHDB")
    run_dir = out / f"{peer}-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    # this checkout's conveyor first (a venv made by another checkout imports its own)
    env |= {"BENCH_REDIS_URL": redis_url, "BENCH_OUT": str(run_dir),
            "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(BENCH_DIR)])}
    group = ProcessGroup(f"chord-{uuid.uuid4().hex}", run_dir)
    sampler = MemorySampler(host, port)
    try:
        group.spawn(spec["worker"](lambda name: str(venv / "bin" / name)), env, BENCH_DIR,
                    "worker")
        baseline = sampler.used()
        sampler.start()
        producer = subprocess.run(
            [str(venv / "bin" / "python"), "-m", spec["module"], str(members)],
            env=env, cwd=BENCH_DIR, capture_output=True, text=True, timeout=1200,
        )
        sampler.stop()
        after = sampler.used()
        workers = group.snapshot()
    finally:
        sampler.done.set()
        group.kill(grace=1.0)
    if producer.returncode != 0:
        raise RuntimeError(f"{peer}: the producer failed:\n{producer.stderr[-3000:]}\n"
                           f"{group.log_tail()}")
    measured = json.loads(producer.stdout.strip().splitlines()[-1])
    calls = [json.loads(line) for path in run_dir.glob("callback-*.jsonl")
             for line in path.read_text().splitlines()]
    return {
        **measured,
        "callback_runs": len(calls),
        "callback_ok": all(c["n"] == members and c["ordered"] for c in calls),
        "redis_peak_mb": (sampler.peak - baseline) / 2**20,
        "redis_after_mb": (after - baseline) / 2**20,
        "worker_rss_mb": workers.rss_total / 2**20,
    }


def render(
    results: dict[str, list[dict[str, Any]]], members: int, runs: int, stamp: str = ""
) -> str:
    peers = ",".join(results)
    lines = [
        f"# Chord benchmark: {members:,} members on Redis",
        "",
        f"Generated {stamp or f'{datetime.now(UTC):%Y-%m-%d %H:%M} UTC'} by `python "
        f"bench/chord.py --members {members} --runs {runs} --peers {peers}`; medians of "
        f"{runs} run(s); what each column means: the docstring of bench/chord.py. Do not "
        "edit by hand: rerun it (the analysis below is pasted from `--analysis`).",
        "",
        "| peer | send (s) | total (s) | members/s | callback runs | in order "
        "| Redis peak (MB) | Redis after (MB) | producer RSS (MB) | producer growth (MB) "
        "| worker RSS (MB) |",
        "|---|--:|--:|--:|--:|:-:|--:|--:|--:|--:|--:|",
    ]
    for peer, rows in results.items():
        if not rows:
            lines.append(f"| {PEERS[peer]['label']} | failed | | | | | | | | | |")
            continue

        def med(key: str, rows: list[dict[str, Any]] = rows) -> float:
            return statistics.median(float(r[key]) for r in rows)

        lines.append(
            f"| {PEERS[peer]['label']} | {med('send_s'):.2f} | {med('total_s'):.2f} "
            f"| {members / med('total_s'):,.0f} "
            f"| {', '.join(str(r['callback_runs']) for r in rows)} "
            f"| {'yes' if all(r['callback_ok'] and r['ordered'] for r in rows) else 'NO'} "
            f"| {med('redis_peak_mb'):.1f} | {med('redis_after_mb'):.1f} "
            f"| {med('producer_rss_kb') / 1024:.0f} | {med('producer_rss_growth_kb') / 1024:.1f} "
            f"| {med('worker_rss_mb'):.0f} |"
        )
    lines += ["", "How each fans in:", ""]
    lines += [f"- {PEERS[p]['label']}: {PEERS[p]['fan_in']}." for p in results]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--peers", default="conveyor,celery,celery-prefork")
    parser.add_argument("--venvs", type=Path, default=BENCH_DIR / ".venvs")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--out", type=Path, default=None, help="write the report here")
    parser.add_argument("--analysis", type=Path, default=None,
                        help="a hand-written analysis to paste under the table")
    parser.add_argument("--render", type=Path, default=None,
                        help="render this raw.json of an earlier run instead of running")
    args = parser.parse_args(argv)
    if args.render is not None:
        raw = json.loads(args.render.read_text())
        members = next(r["n"] for rows in raw.values() for r in rows)
        runs = max(len(rows) for rows in raw.values())
        stamp = datetime.fromtimestamp(args.render.stat().st_mtime, UTC)
        report = render(raw, members, runs, f"{stamp:%Y-%m-%d %H:%M} UTC")
        _write(report, args.out, args.analysis)
        return
    peers = [p for p in args.peers.split(",") if p]
    work = BENCH_DIR / "out" / f"chord-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    results: dict[str, list[dict[str, Any]]] = {p: [] for p in peers}
    for round_ in range(args.runs):  # rounds outermost: drift hits every peer alike
        for peer in peers:
            log(f"run {round_ + 1}/{args.runs}: {peer}, {args.members:,} members")
            try:
                row = one_run(peer, args.venvs, args.members, args.redis_url, work)
            except Exception as exc:  # a failed run is reported, not averaged
                log(f"{peer} failed: {exc}")
                continue
            log(f"{peer}: " + json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                          for k, v in row.items()}))
            results[peer].append(row)
    (work / "raw.json").write_text(json.dumps(results, indent=1))
    log(f"raw data: {work / 'raw.json'}")
    _write(render(results, args.members, args.runs), args.out, args.analysis)


def _write(report: str, out: Path | None, analysis: Path | None) -> None:
    if analysis is not None:
        report += "\n" + analysis.read_text()
    print(report)
    if out is not None:
        out.write_text(report)
        log(f"wrote {out}")


if __name__ == "__main__":
    main()
