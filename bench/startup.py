#!/usr/bin/env python3
"""Worker start-up: from starting the worker command to its first task starting.

    python bench/startup.py                      # conveyor on SQLite and Redis, ardiq; 7 runs each
    python bench/startup.py --runs 11 --peers conveyor-redis,ardiq
    python bench/startup.py --workers 2          # `conveyor worker --workers 2`
    # before/after in one run: another checkout's sources as the NAME@baseline peers
    git archive main src | tar -x -C /tmp/base
    python bench/startup.py --baseline-src /tmp/base/src \
        --peers conveyor-sqlite,conveyor-sqlite@baseline,conveyor-redis,conveyor-redis@baseline

One task is enqueued before the worker starts (by a producer process that has exited by
then). The clock starts just before the worker command is started and stops when the
task's body begins: the task writes ``time.monotonic()`` (system-wide on Linux, so
comparable across processes) to a file. The worker is then stopped with SIGTERM. The
script prints the median, the fastest and the slowest of ``--runs`` runs per peer,
after one untimed run per peer that fills the page cache and writes the bytecode caches
(``PYTHONDONTWRITEBYTECODE`` is dropped from the workers' environment: an installed
package has its ``.pyc`` files, and compiling Conveyor's sources on every start would
double its import time). Runs are interleaved, one per peer per round.

Conveyor runs from this checkout (``src/`` on ``PYTHONPATH``) with the interpreter of
``bench/.venvs/conveyor`` (what ``conveyor-tasks[redis]`` installs, as bench/run.py uses;
``--python current`` for the one running this script). ardiq runs from ``bench/.venvs/ardiq`` (created by ``bench/run.py
--setup-only --peers ardiq``, or by this script on first use); it is left out, with
the reason, when that venv cannot be made. Redis DB 13 is flushed before every Redis
run (not 15: run.py flushes that one, and the two must not clear each other's backlog
when they run at once).

Standard library only, like bench/run.py.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from harness.redisc import Redis  # noqa: E402

CONVEYOR_APP = '''
import os, time
from conveyor import Conveyor

app = Conveyor()


@app.task
async def first() -> None:
    started = time.monotonic()
    with open(os.environ["STARTUP_MARK"], "w") as out:
        out.write(repr(started))


async def enqueue_one() -> None:
    async with app:
        await first.kiq()
    print("enqueued", flush=True)
'''

ARDIQ_APP = '''
import os, time
from ardiq import Ardiq

app = Ardiq(redis_url=os.environ["STARTUP_REDIS_URL"], queue_name="startup")


@app.task()
async def first() -> None:
    started = time.monotonic()
    with open(os.environ["STARTUP_MARK"], "w") as out:
        out.write(repr(started))


async def enqueue_one() -> None:
    await first.enqueue()
    print("enqueued", flush=True)
'''


@dataclass
class Peer:
    name: str
    python: str
    app_source: str
    worker: Callable[[int], list[str]]
    env: dict[str, str]
    reset: Callable[[], None]


def _flush(redis_url: str) -> Callable[[], None]:
    host_port, _, db = redis_url.removeprefix("redis://").partition("/")
    host, _, port = host_port.partition(":")
    number = int(db or 0)
    if number == 0:
        raise SystemExit("refusing to FLUSHDB Redis DB 0: pass --redis-url .../15")

    def flush() -> None:
        with Redis(host, int(port or 6379), number) as redis:
            redis.execute("FLUSHDB")

    return flush


def _conveyor(name: str, broker_url: str, reset: Callable[[], None], src: Path,
              python: str) -> Peer:
    def worker(workers: int) -> list[str]:
        return [python, "-m", "conveyor.cli", "worker", "startup_app:app",
                "--workers", str(workers), "--log-level", "WARNING"]

    return Peer(name, python, CONVEYOR_APP, worker,
                {"CONVEYOR_BROKER_URL": broker_url, "PYTHONPATH": str(src)}, reset)


def _conveyor_python(choice: str) -> str:
    """The interpreter Conveyor starts with: by default bench/.venvs/conveyor's, which
    holds what ``pip install conveyor-tasks[redis]`` installs and no more (a development
    environment's extras change the start-up: with opentelemetry-sdk installed, redis-py
    imports it, about 35 ms); ``current``: the one running this script."""
    if choice == "current":
        return sys.executable
    if choice != "bench":
        return choice
    from harness.env import choose_python, ensure_venv, find_pythons
    from peers.conveyor import ADAPTER

    return ensure_venv(ADAPTER, choose_python(ADAPTER, find_pythons(), "3.12"), print).python


def _ardiq(redis_url: str) -> Peer:
    from harness.env import choose_python, ensure_venv, find_pythons
    from peers.ardiq import ADAPTER

    python = choose_python(ADAPTER, find_pythons(), "3.12")
    venv = ensure_venv(ADAPTER, python, print)

    def worker(workers: int) -> list[str]:
        return [venv.bin("ardiq"), "run", "--quiet", "--workers", str(workers),
                "startup_app:app"]

    return Peer("ardiq", venv.python, ARDIQ_APP, worker,
                {"STARTUP_REDIS_URL": redis_url}, _flush(redis_url))


def one_run(peer: Peer, workdir: Path, workers: int, timeout: float) -> float:
    """Seconds from starting the worker command to its first task starting."""
    mark = workdir / "started"
    mark.unlink(missing_ok=True)
    # bytecode caches are written (by the warm-up run) and used, as in an installed package
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CONVEYOR_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(peer.env)
    env["STARTUP_MARK"] = str(mark)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(workdir), env.get("PYTHONPATH")]))
    peer.reset()
    produced = subprocess.run(
        [peer.python, "-c", "import asyncio, startup_app; asyncio.run(startup_app.enqueue_one())"],
        env=env, cwd=workdir, timeout=60, capture_output=True, text=True,
    )
    # what matters is the enqueue: ardiq 1.2.0's producer sometimes segfaults at exit after
    if "enqueued" not in produced.stdout:
        raise RuntimeError(f"{peer.name}: the producer failed:\n{produced.stderr}")
    log = (workdir / "worker.log").open("wb")
    t0 = time.monotonic()
    worker = subprocess.Popen(peer.worker(workers), env=env, cwd=workdir, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while not mark.exists() or not mark.read_text():
            if worker.poll() is not None:
                raise RuntimeError(f"{peer.name}: the worker exited with {worker.returncode}:\n"
                                   + (workdir / "worker.log").read_text())
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{peer.name}: no task started within {timeout:g}s")
            time.sleep(0.002)
        return float(mark.read_text()) - t0
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        log.close()


def _make_peer(name: str, workdir: Path, opts: argparse.Namespace) -> Peer:
    base, _, variant = name.partition("@")
    src = opts.src if not variant else opts.baseline_src
    if variant and (variant != "baseline" or src is None):
        raise SystemExit(f"{name!r}: only NAME@baseline, with --baseline-src")
    if base == "conveyor-sqlite":
        db = workdir / "startup.db"

        def reset() -> None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)

        return _conveyor(name, f"sqlite:///{db}", reset, src, _conveyor_python(opts.python))
    if base == "conveyor-redis":
        return _conveyor(name, opts.redis_url, _flush(opts.redis_url), src,
                         _conveyor_python(opts.python))
    if base == "ardiq" and not variant:
        return _ardiq(opts.redis_url)
    raise SystemExit(f"unknown peer {name!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--peers", default="conveyor-sqlite,conveyor-redis,ardiq",
                        help="comma-separated; NAME@baseline runs NAME from --baseline-src")
    # not run.py's DB 15: a full run there would take (and FLUSHDB) this script's task
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--python", default="bench",
                        help="Conveyor's interpreter: bench (bench/.venvs/conveyor, a "
                        "conveyor-tasks[redis] install), current, or a path")
    parser.add_argument("--src", type=Path, default=REPO / "src",
                        help="the Conveyor sources to run (default: this checkout's)")
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="another checkout's src/, run by the NAME@baseline peers")
    opts = parser.parse_args()
    wanted = [p.strip() for p in opts.peers.split(",") if p.strip()]
    with tempfile.TemporaryDirectory(prefix="conveyor-startup-") as tmp:
        peers: list[tuple[Peer, Path]] = []
        for name in wanted:
            workdir = Path(tmp) / name.replace("@", "-")
            workdir.mkdir()
            try:
                peer = _make_peer(name, workdir, opts)
            except Exception as exc:  # a peer that cannot be set up is reported, not fatal
                print(f"{name}: left out: {exc}")
                continue
            (workdir / "startup_app.py").write_text(peer.app_source)
            one_run(peer, workdir, opts.workers, opts.timeout)  # bytecode and page caches
            peers.append((peer, workdir))
        # rounds outermost, as bench/run.py: drift on a busy machine hits every peer alike
        times: dict[str, list[float]] = {peer.name: [] for peer, _ in peers}
        for _ in range(opts.runs):
            for peer, workdir in peers:
                times[peer.name].append(one_run(peer, workdir, opts.workers, opts.timeout))
    for name, seconds in times.items():
        print(f"{name}: " + " ".join(f"{t:.3f}" for t in seconds))
    print(f"\nworker start -> first task started, --workers {opts.workers}, "
          f"{opts.runs} runs (seconds)")
    print(f"{'peer':<26}{'median':>8}{'min':>8}{'max':>8}")
    for name, seconds in times.items():
        print(f"{name:<26}{statistics.median(seconds):>8.3f}{min(seconds):>8.3f}"
              f"{max(seconds):>8.3f}")


if __name__ == "__main__":
    main()
