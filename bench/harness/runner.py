"""One benchmark run of one peer: reset, enqueue, start workers, wait, verify, measure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.adapter import BENCH_DIR, Adapter, Venv, WorkerSpec
from harness.procs import ProcessGroup
from harness.redisc import Redis

now = time.monotonic  # system-wide CLOCK_MONOTONIC, same clock as benchkit.ledger.now

SLEEP_SECONDS = 0.01
WARMUP_BASE = 1_000_000


class RunFailure(Exception):
    """The run is reported as failed and does not count."""


@dataclass(frozen=True)
class Cell:
    workload: str  # "noop" | "sleep"
    procs: int
    concurrency: int | None
    results: bool
    n: int

    def key(self) -> str:
        conc = "default" if self.concurrency is None else str(self.concurrency)
        res = "results" if self.results else "noresults"
        return f"{self.workload}/p{self.procs}/c{conc}/{res}/n{self.n}"


@dataclass
class Options:
    redis_url: str
    pg_dsn: str
    out_dir: Path
    time_limit: float
    latency_n: int = 200
    latency_gap_ms: float = 10.0
    dup_grace: float = 0.3
    drain_cap: float = 0.0
    """Stop a drain after this many seconds and rate what was done (0: drain it all)."""
    enqueue_timed: int = 5000
    """Time only the first N enqueues of each backlog (the rest is filled untimed)."""
    keep_run_dirs: bool = False
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    """RabbitMQ for the RabbitMQ peers (each deletes its own queues in ``prepare``)."""
    nats_url: str = "nats://127.0.0.1:4222"
    """NATS for the NATS peers (each deletes its own streams in ``prepare``)."""


@dataclass
class RunResult:
    peer: str
    kind: str  # "drain" | "latency"
    cell: dict[str, Any]
    ok: bool
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class LedgerReader:
    """Tails the per-process ledger files written by benchkit.ledger."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.offsets: dict[Path, int] = {}
        self.partial: dict[Path, bytes] = {}
        self.seen: dict[int, tuple[float, float]] = {}  # id -> (started, ended) of first run
        self.counts: dict[int, int] = {}
        self.pids: set[int] = set()
        self.lines = 0

    def poll(self) -> None:
        for path in self.dir.glob("*.ledger"):
            off = self.offsets.get(path, 0)
            with open(path, "rb") as f:
                f.seek(off)
                data = f.read()
            if not data:
                continue
            self.offsets[path] = off + len(data)
            self.pids.add(int(path.stem))
            data = self.partial.pop(path, b"") + data
            *complete, rest = data.split(b"\n")
            if rest:
                self.partial[path] = rest
            for line in complete:
                tid_s, st_s, en_s = line.split()
                tid = int(tid_s)
                self.lines += 1
                self.counts[tid] = self.counts.get(tid, 0) + 1
                if tid not in self.seen:
                    self.seen[tid] = (float(st_s), float(en_s))

    def has_all(self, ids: range) -> bool:
        return all(i in self.seen for i in ids)

    def verify(self, ids: range, complete: bool = True) -> str:
        """'' if every id in ``ids`` ran exactly once (ignoring warm-up ids), else why not.
        With ``complete=False`` (a time-capped drain) ids that have not run yet are fine."""
        missing = sum(1 for i in ids if i not in self.counts) if complete else 0
        dups = sum(1 for i in ids if self.counts.get(i, 0) > 1)
        extra = sum(1 for i in self.counts if i not in ids and i < WARMUP_BASE)
        problems = []
        if missing:
            problems.append(f"{missing} tasks never ran")
        if dups:
            problems.append(f"{dups} tasks ran more than once")
        if extra:
            problems.append(f"{extra} unknown task ids")
        return "exactly-once check failed: " + ", ".join(problems) if problems else ""


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


class PeerRunner:
    def __init__(self, adapter: Adapter, venv: Venv, opts: Options,
                 log: Callable[[str], None]) -> None:
        self.adapter = adapter
        self.venv = venv
        self.opts = opts
        self.log = log
        self.facts: dict[str, Any] = {}

    # -- plumbing -----------------------------------------------------------------

    def _env(self, spec: WorkerSpec, ledger_dir: Path, workdir: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")}
        env.update(
            PATH=f"{self.venv.path / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            VIRTUAL_ENV=str(self.venv.path),
            PYTHONPATH=str(BENCH_DIR),
            PYTHONDONTWRITEBYTECODE="1",
            BENCH_REDIS_URL=self.opts.redis_url,
            BENCH_PG_DSN=self.opts.pg_dsn,
            BENCH_AMQP_URL=self.opts.amqp_url,
            BENCH_NATS_URL=self.opts.nats_url,
            BENCH_RESULTS="1" if spec.results else "0",
            BENCH_CONCURRENCY="" if spec.concurrency is None else str(spec.concurrency),
            BENCH_LEDGER_DIR=str(ledger_dir),
            BENCH_WORKDIR=str(workdir),
        )
        return env

    def _app(self, args: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
        cmd = [self.venv.python, "-m", "benchkit", self.adapter.app_module, *args]
        try:
            proc = subprocess.run(cmd, env=env, cwd=BENCH_DIR, capture_output=True, text=True,
                                  timeout=timeout, start_new_session=True)
        except subprocess.TimeoutExpired as exc:
            raise RunFailure(f"`{args[0]}` timed out after {timeout:.0f}s") from exc
        for line in proc.stdout.splitlines():
            if line.startswith("BENCH-JSON "):
                return dict(json.loads(line[len("BENCH-JSON "):]))
        tail = (proc.stderr or proc.stdout).strip()
        last = tail.splitlines()[-1] if tail else "no output"
        raise RunFailure(f"`{args[0]}` failed (exit {proc.returncode}): {last}\n{tail[-1500:]}")

    def _reset(self, env: dict[str, str]) -> None:
        # RabbitMQ and NATS peers keep results in Redis
        if self.adapter.backend in ("redis", "rabbitmq", "nats"):
            url = self.opts.redis_url
            hostport, _, db = url.split("://", 1)[1].partition("/")
            host, _, port = hostport.partition(":")
            if not db or int(db) == 0:
                raise RunFailure("refusing to FLUSHDB Redis DB 0: use a dedicated DB index")
            with Redis(host, int(port or 6379), int(db)) as r:
                r.execute("FLUSHDB")
        if self.adapter.needs_prepare:
            self.facts.update(self._app(["prepare"], env, timeout=120))

    def _dirs(self, label: str) -> tuple[Path, Path, Path, Path]:
        run_dir = self.opts.out_dir / "runs" / f"{self.adapter.name}-{label}-{uuid.uuid4().hex[:8]}"
        ledger, work, logs = run_dir / "ledger", run_dir / "work", run_dir / "logs"
        for d in (ledger, work, logs):
            d.mkdir(parents=True)
        return run_dir, ledger, work, logs

    def _cleanup(self, run_dir: Path, ok: bool) -> None:
        if ok and not self.opts.keep_run_dirs:
            shutil.rmtree(run_dir, ignore_errors=True)

    def _start_workers(self, spec: WorkerSpec, env: dict[str, str], logs: Path) -> ProcessGroup:
        group = ProcessGroup(uuid.uuid4().hex, logs)
        for k, cmd in enumerate(self.adapter.worker_commands(self.venv, spec)):
            group.spawn(cmd, env, BENCH_DIR, f"worker{k}")
        return group

    def _wait(self, reader: LedgerReader, group: ProcessGroup, ids: range, deadline: float,
              on_first: Callable[[], None] | None = None, cap: float = 0.0) -> bool:
        """Wait until every id has run (True), or the ``cap`` deadline passes (False)."""
        while True:
            reader.poll()
            if on_first is not None and reader.lines:
                on_first()
                on_first = None
            if reader.has_all(ids):
                return True
            if cap and now() > cap:
                return False
            if exited := group.exited():
                raise RunFailure(
                    f"worker process exited early (exit codes {[rc for _, rc in exited]}) "
                    f"after {len(reader.seen)} tasks\n{group.log_tail()}"
                )
            if now() > deadline:
                done = sum(1 for i in ids if i in reader.seen)
                raise RunFailure(
                    f"time limit ({self.opts.time_limit:.0f}s) hit with {done}/{len(ids)} "
                    f"tasks done\n{group.log_tail(600)}"
                )
            time.sleep(0.02)

    # -- measurements -------------------------------------------------------------

    def drain(self, cell: Cell) -> RunResult:
        """Enqueue a backlog of ``cell.n`` tasks, then time workers draining it."""
        spec = WorkerSpec(cell.procs, cell.concurrency, cell.results)
        run_dir, ledger_dir, workdir, logs = self._dirs(cell.key().replace("/", "_"))
        env = self._env(spec, ledger_dir, workdir)
        result = RunResult(self.adapter.name, "drain", asdict(cell), ok=False)
        group: ProcessGroup | None = None
        sleep = SLEEP_SECONDS if cell.workload == "sleep" else 0.0
        ids = range(cell.n)
        try:
            self._reset(env)
            enq = self._app(["enqueue", "--n", str(cell.n), "--sleep", str(sleep),
                             "--timed", str(self.opts.enqueue_timed)], env,
                            timeout=self.opts.time_limit)
            result.info["enqueue_mode"] = enq["mode"]
            result.metrics["enqueue_rate"] = enq["n"] / enq["seconds"]

            reader = LedgerReader(ledger_dir)
            cpu_at_first: list[float] = []
            t0 = now()
            group = self._start_workers(spec, env, logs)
            cap = t0 + self.opts.drain_cap if self.opts.drain_cap else 0.0
            complete = self._wait(
                reader, group, ids, t0 + self.opts.time_limit, cap=cap,
                on_first=lambda: cpu_at_first.append(group.snapshot().cpu_s))
            if complete:
                time.sleep(self.opts.dup_grace)  # let a late duplicate show up
            snap = group.snapshot()
            group.kill()
            reader.poll()
            if err := reader.verify(ids, complete):
                raise RunFailure(err)
            done = [i for i in ids if i in reader.seen]
            if not done:
                raise RunFailure(f"no task done within the {self.opts.drain_cap:.0f} s cap")
            started = [reader.seen[i][0] for i in done]
            ended = [reader.seen[i][1] for i in done]
            result.info["capped"] = not complete
            result.metrics.update(
                done=len(done),
                drain_rate=len(done) / (max(ended) - t0),
                steady_rate=len(done) / (max(ended) - min(started)),
                startup_s=min(started) - t0,
                cpu_ms_per_task=1000 * (snap.cpu_s - (cpu_at_first or [0.0])[0]) / len(done),
                rss_task_proc_mib=max(
                    (snap.rss_by_pid.get(pid, 0) for pid in reader.pids), default=0
                ) / 2**20,
                rss_total_mib=snap.rss_total / cell.procs / 2**20,
            )
            result.info["task_processes"] = len(reader.pids)
            result.info["worker_processes"] = len(snap.rss_by_pid)
            result.ok = True
        except (RunFailure, OSError, KeyError, ValueError) as exc:
            result.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RunFailure) \
                else str(exc)
        finally:
            if group is not None:
                group.kill()
            self._cleanup(run_dir, result.ok)
        return result

    def latency(self, results: bool, concurrency: int | None = 100) -> RunResult:
        """Enqueue-to-start latency on an idle queue, one task at a time, 1 warm worker."""
        spec = WorkerSpec(1, concurrency, results)
        run_dir, ledger_dir, workdir, logs = self._dirs("latency")
        env = self._env(spec, ledger_dir, workdir)
        cell = {"procs": 1, "concurrency": concurrency, "results": results,
                "n": self.opts.latency_n, "gap_ms": self.opts.latency_gap_ms}
        result = RunResult(self.adapter.name, "latency", cell, ok=False)
        group: ProcessGroup | None = None
        try:
            self._reset(env)
            reader = LedgerReader(ledger_dir)
            group = self._start_workers(spec, env, logs)
            warm = range(WARMUP_BASE, WARMUP_BASE + 5)
            self._app(["enqueue", "--start", str(warm.start), "--n", str(len(warm))], env,
                      timeout=self.opts.time_limit)
            self._wait(reader, group, warm, now() + self.opts.time_limit)
            time.sleep(0.5)  # idle: let the worker settle into its wait for work
            ids = range(self.opts.latency_n)
            out = self._app(["latency", "--n", str(len(ids)),
                             "--gap-ms", str(self.opts.latency_gap_ms)], env,
                            timeout=self.opts.time_limit)
            self._wait(reader, group, ids, now() + self.opts.time_limit)
            time.sleep(self.opts.dup_grace)
            group.kill()
            reader.poll()
            if err := reader.verify(ids):
                raise RunFailure(err)
            enq = {int(k): float(v) for k, v in out["enqueued"].items()}
            lat = [(reader.seen[i][0] - enq[i]) * 1000 for i in ids]
            result.metrics.update(
                p50_ms=percentile(lat, 50), p99_ms=percentile(lat, 99), max_ms=max(lat)
            )
            result.ok = True
        except (RunFailure, OSError, KeyError, ValueError) as exc:
            result.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RunFailure) \
                else str(exc)
        finally:
            if group is not None:
                group.kill()
            self._cleanup(run_dir, result.ok)
        return result
