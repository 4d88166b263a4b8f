#!/usr/bin/env python3
"""Single-task enqueue rate at K concurrent callers, one producer process, per peer.

    python bench/kiq.py                          # conveyor and ardiq, 20,000 calls, K=32, 5 rounds
    python bench/kiq.py --peers conveyor,ardiq,taskiq --in-flight 32 --rounds 7

Each call enqueues one task (Conveyor's ``kiq()``, ardiq's ``enqueue()``, taskiq's
``kiq()``), as K concurrent web requests would; the clock runs from the first call to the
last returning, with the connections opened before. Every peer runs in its bench/.venvs
environment (``bench/run.py --setup-only`` makes them), against Redis DB 11 (FLUSHDB'ed
before every run: run.py uses 15, startup.py 13, hotpath.py 12). Rounds are interleaved,
one run per peer per round; the report is the median and the range. Results are stored
(``BENCH_RESULTS=1``): the producer side does not change with it, but the settings match
bench/run.py's "results stored" cells.

Standard library only, like bench/run.py.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from harness.env import choose_python, ensure_venv, find_pythons  # noqa: E402
from harness.redisc import Redis  # noqa: E402
from peers import discover  # noqa: E402


def _flush(url: str) -> None:
    hostport, _, db = url.split("://", 1)[1].partition("/")
    host, _, port = hostport.partition(":")
    if not db or int(db) == 0:
        raise SystemExit("refusing to FLUSHDB Redis DB 0: pass --redis-url .../11")
    with Redis(host, int(port or 6379), int(db)) as redis:
        redis.execute("FLUSHDB")


def one_run(python: str, app_module: str, n: int, in_flight: int, url: str) -> float:
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")}
    env.update(PYTHONPATH=str(BENCH_DIR), BENCH_REDIS_URL=url, BENCH_RESULTS="1",
               BENCH_WORKDIR="/tmp", BENCH_LEDGER_DIR="/tmp")
    _flush(url)
    out = subprocess.run(
        [python, "-m", "benchkit", app_module, "concurrent", "--n", str(n),
         "--in-flight", str(in_flight)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    for line in out.stdout.splitlines():
        if line.startswith("BENCH-JSON "):
            data = json.loads(line.removeprefix("BENCH-JSON "))
            return data["n"] / data["seconds"]
    raise RuntimeError(f"{app_module} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", default="conveyor,ardiq")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    opts = parser.parse_args()
    adapters = discover()
    peers = []
    for name in opts.peers.split(","):
        adapter = adapters[name]
        venv = ensure_venv(adapter, choose_python(adapter, find_pythons(), "3.12"), print)
        peers.append((name, venv.python, adapter.app_module))
    rates: dict[str, list[float]] = {name: [] for name, _, _ in peers}
    for round_ in range(opts.rounds):
        for name, python, module in peers:
            rate = one_run(python, module, opts.n, opts.in_flight, opts.redis_url)
            rates[name].append(rate)
            print(f"round {round_ + 1}: {name} {rate:,.0f}/s", flush=True)
    _flush(opts.redis_url)
    print(f"\n{opts.n:,} single enqueues at {opts.in_flight} concurrent callers, "
          f"median of {opts.rounds} (range):")
    medians = {name: statistics.median(r) for name, r in rates.items()}
    base = medians.get("ardiq")
    for name, r in rates.items():
        ratio = f"  {medians[name] / base:.2f}x ardiq" if base else ""
        print(f"  {name:10} {medians[name]:>9,.0f}/s ({min(r):,.0f}-{max(r):,.0f}){ratio}")


if __name__ == "__main__":
    main()
