"""Eight queues on one Redis against eight queues on a 3-master Redis Cluster.

    python bench/scale.py                          # 3 interleaved runs of each, Markdown out
    python bench/scale.py --runs 5 --n 16000 --out bench/RESULTS-scale.md

Runs in the project's own environment (it imports Conveyor and redis-py) and starts its
own servers on private loopback ports (never 6379): one ``redis-server``, and a Redis
Cluster of three masters without replicas (``redis-cli --cluster create``), each with
persistence off; all are killed and their directories removed at the end, whatever
happened. Needs ``redis-server`` and ``redis-cli`` on ``PATH``.

One run: four ``conveyor worker`` processes start idle, one per queue group (``q0,q1``,
``q2,q3``, ...; ``--concurrency``), then this process enqueues ``--n`` no-op tasks spread
evenly over the eight queues (batches of 500, results stored) while the workers drain
them; the run ends when every queue is empty and every task's result is stored. Reported
per run: throughput (tasks / wall time from the first enqueue to the end), and CPU per
task: the workers' (user + system of the worker processes, from ``/proc``), the Redis
servers' (``INFO cpu`` of every node, summed) and the producer's (this process), each
over the same interval. The runs alternate (single, cluster, single, ...) so a
machine-wide slowdown hits both; the report gives medians and the scaling factor
(cluster throughput / single throughput).

What it measures depends on the cores: with fewer cores than busy processes (workers,
producer, three cluster nodes) a cluster cannot add capacity, and the figure is the
cluster's overhead (more connections and round trips per fetch, MOVED-free but per-node
pipelines, sharded pub/sub) rather than its gain. Raw data goes to
``bench/out/scale-<stamp>.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
GROUPS = [["q0", "q1"], ["q2", "q3"], ["q4", "q5"], ["q6", "q7"]]
QUEUES = [q for group in GROUPS for q in group]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (+10000) is free too, from 26000-29999 (the
    tests' private clusters use 21000-25999)."""
    candidates = list(range(26000, 30000))
    random.shuffle(candidates)
    found = [p for p in candidates[:400] if _bindable(p) and _bindable(p + 10000)]
    if len(found) < count:
        raise SystemExit("no free private ports for the benchmark's Redis servers")
    return found[:count]


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():
                return
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)  # sleep: polling another process


@dataclass
class Servers:
    """Private ``redis-server`` processes, killed by :meth:`stop`."""

    directory: Path
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, port: int, *extra: str) -> None:
        where = self.directory / str(port)
        where.mkdir(parents=True)
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--maxmemory-policy", "noeviction"]
        argv += ["--logfile", "redis.log", *extra]
        self.procs.append(
            subprocess.Popen(argv, cwd=where, stdout=subprocess.DEVNULL, start_new_session=True)
        )
        self.ports.append(port)
        _wait(lambda: redis.Redis(port=port).ping(), 15, f"redis-server on {port}")

    def cpu(self) -> float:
        """User + system CPU seconds of every server so far."""
        total = 0.0
        for port in self.ports:
            with redis.Redis(port=port) as client:
                info = client.info("cpu")
            total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        return total

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        self.procs.clear()


def start_single(directory: Path) -> tuple[Servers, str]:
    servers = Servers(directory)
    (port,) = _ports(1)
    servers.start(port)
    return servers, f"redis://127.0.0.1:{port}/0"


def start_cluster(directory: Path) -> tuple[Servers, str]:
    servers = Servers(directory)
    ports = _ports(3)
    for port in ports:
        servers.start(port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
    create = ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)]
    create += ["--cluster-replicas", "0", "--cluster-yes"]
    done = subprocess.run(create, capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        servers.stop()
        raise SystemExit(f"redis-cli --cluster create failed: {done.stdout!r}")

    def ok() -> bool:
        for port in ports:
            with redis.Redis(port=port) as client:
                if client.cluster("info")["cluster_state"] != "ok":
                    return False
        return True

    _wait(ok, 30, "the cluster to be ok")
    hosts = ",".join(f"127.0.0.1:{p}" for p in ports)
    return servers, f"redis+cluster://{hosts}/"


def _tree(root: int) -> list[int]:
    """``root`` and its descendants (the worker supervisor forks its children)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def _cpu_of(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def start_workers(url: str, concurrency: int, logs: Path) -> list[subprocess.Popen[bytes]]:
    env = dict(os.environ)
    env["CONVEYOR_BROKER_URL"] = url
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    procs = []
    for i, group in enumerate(GROUPS):
        log = (logs / f"worker-{i}.log").open("wb")
        argv = [sys.executable, "-m", "conveyor.cli", "worker", "scale_app:app"]
        argv += ["-q", ",".join(group), "-c", str(concurrency), "--workers", "1"]
        procs.append(
            subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=HERE)
        )
    for i in range(len(GROUPS)):

        def started(i: int = i) -> bool:
            text = (logs / f"worker-{i}.log").read_text(errors="replace")
            if procs[i].poll() is not None:
                raise SystemExit(f"a worker exited: {text[-2000:]}")
            return "started on" in text

        _wait(started, 60, f"worker {i} to start")
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _produce_and_drain(url: str, n: int, worker_pids: list[int]) -> dict[str, Any]:
    os.environ["CONVEYOR_BROKER_URL"] = url
    sys.path.insert(0, str(HERE))
    import scale_app

    app = scale_app.app
    async with app:
        wall, producer = time.perf_counter(), time.process_time()
        workers = _cpu_of(worker_pids)
        handles = []
        for start in range(0, n, 500):
            calls: list[tuple[Any, tuple[int], dict[str, Any]]] = [
                (scale_app.TASKS[QUEUES[i % len(QUEUES)]], (i,), {})
                for i in range(start, min(start + 500, n))
            ]
            handles += await app.enqueue_many(calls)
        enqueued = time.perf_counter() - wall
        while True:
            depths = await app.broker.queue_depths()
            if not [d for d in depths if d.ready or d.delayed or d.running]:
                break
            await asyncio.sleep(0.02)  # sleep: polling the queues
        wall = time.perf_counter() - wall
        producer = time.process_time() - producer
        workers = _cpu_of(worker_pids) - workers
        # after the clock: every task's result is stored, with its value
        for start in range(0, n, 1000):
            chunk = handles[start : start + 1000]
            values = [(await h.result()).unwrap() for h in chunk]
            assert values == list(range(start, start + len(chunk))), "a result is missing"
        return {
            "wall": wall,
            "enqueue_wall": enqueued,
            "producer_cpu": producer,
            "worker_cpu": workers,
        }


def one_run(kind: str, n: int, concurrency: int, scratch: Path) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=scratch))
    servers, base = (start_single if kind == "single" else start_cluster)(directory)
    url = f"{base}?prefix=bench-scale"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs = start_workers(url, concurrency, directory)
        pids = [pid for proc in procs for pid in _tree(proc.pid)]
        redis_before = servers.cpu()
        code = (
            "import asyncio, json, sys; sys.path.insert(0, sys.argv[1]); import scale; "
            "print(json.dumps(asyncio.run(scale._produce_and_drain(sys.argv[2], "
            "int(sys.argv[3]), json.loads(sys.argv[4])))))"
        )
        # the producer runs in a fresh process: the app binds its broker URL at import
        done = subprocess.run(
            [sys.executable, "-c", code, str(HERE), url, str(n), json.dumps(pids)],
            capture_output=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"the producer failed: {done.stderr.decode()[-3000:]}")
        run: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
        run["redis_cpu"] = servers.cpu() - redis_before
        run.update(kind=kind, n=n, nodes=len(servers.ports))
        return run
    finally:
        stop_workers(procs)
        servers.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def report(runs: list[dict[str, Any]], argv: list[str], cores: int) -> str:
    by = {kind: [r for r in runs if r["kind"] == kind] for kind in ("single", "cluster")}
    n = runs[0]["n"]
    rows = []
    rate = {}
    for kind, mine in by.items():
        rates = [r["n"] / r["wall"] for r in mine]
        rate[kind] = statistics.median(rates)
        per = {k: _median(mine, k) / n * 1e6 for k in ("worker_cpu", "redis_cpu", "producer_cpu")}
        total = sum(per.values())
        shown = ", ".join(f"{x:,.0f}" for x in rates)
        rows.append(
            f"| {kind} ({mine[0]['nodes']} node{'s' if mine[0]['nodes'] > 1 else ''}) | "
            f"**{rate[kind]:,.0f}** ({shown}) | {per['worker_cpu']:.0f} | "
            f"{per['redis_cpu']:.0f} | {per['producer_cpu']:.0f} | **{total:.0f}** |"
        )
    factor = rate["cluster"] / rate["single"]
    return "\n".join(
        [
            f"## Eight queues: one Redis against a 3-master cluster "
            f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
            "",
            f"`python bench/scale.py {' '.join(argv)}`",
            "",
            f"{n:,} no-op tasks per run over 8 queues (results stored), 4 worker processes "
            f"(one per queue group of 2 queues), the producer in its own process; "
            f"{len(by['single'])} runs of each, interleaved; medians. Machine: {cores} "
            f"core(s), Redis {_redis_version()}, Python {sys.version.split()[0]}.",
            "",
            "| broker | tasks/s (runs) | worker CPU µs/task | Redis CPU µs/task "
            "| producer CPU µs/task | total CPU µs/task |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"Scaling factor (cluster tasks/s / single tasks/s): **{factor:.2f}**.",
            "",
        ]
    )


def _redis_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, check=False)
    words = out.stdout.decode().split()
    return next((w.split("=", 1)[1] for w in words if w.startswith("v=")), "?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=8000, help="tasks per run")
    parser.add_argument("--runs", type=int, default=3, help="runs of each (at least 3)")
    parser.add_argument("--concurrency", type=int, default=50, help="per worker process")
    parser.add_argument("--out", default="", help="write the Markdown report here too")
    args = parser.parse_args()
    if args.runs < 3:
        parser.error("--runs must be at least 3 (the report gives medians)")
    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        raise SystemExit("redis-server and redis-cli are needed (apt-get install redis)")
    scratch = Path(tempfile.mkdtemp(prefix="conveyor-bench-scale-"))
    runs = []
    try:
        for i in range(args.runs * 2):
            kind = "single" if i % 2 == 0 else "cluster"
            run = one_run(kind, args.n, args.concurrency, scratch)
            cpu = run["worker_cpu"] + run["redis_cpu"] + run["producer_cpu"]
            rate = run["n"] / run["wall"]
            print(
                f"{kind}: {rate:,.0f} tasks/s, {cpu / run['n'] * 1e6:.0f} µs CPU/task",
                file=sys.stderr,
            )
            runs.append(run)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    raw = out_dir / f"scale-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    raw.write_text(json.dumps({"argv": sys.argv[1:], "runs": runs}, indent=1))
    text = report(runs, sys.argv[1:], os.cpu_count() or 0)
    if args.out:
        Path(args.out).write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
