"""Redis traffic per job: an untimed small run with MONITOR on (``run.py --probe``).

Counts the commands each phase sends to the benchmark DB (MONITOR lines tagged with its
index; commands issued by Lua scripts are tagged ``lua`` and counted apart), and the
server's ``total_reads_processed`` delta during the worker phase (one per socket read, so
about one per client round trip; a pipeline is usually one read), minus the idle rate
measured just before (other clients of the same server).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from harness.adapter import WorkerSpec
from harness.procs import ProcessGroup
from harness.redisc import Redis
from harness.runner import BENCH_DIR, LedgerReader, PeerRunner, RunFailure

LINE = re.compile(r'^\d+\.\d+ \[(\d+) ([^\]]+)\] "([^"]+)"')


class Monitor(threading.Thread):
    """Collects MONITOR lines for one DB; phases are attributed by the server timestamps
    (the reader may lag behind when other clients are busy)."""

    def __init__(self, host: str, port: int, db: int) -> None:
        super().__init__(daemon=True)
        self.conn = Redis(host, port, timeout=None)
        self.db = str(db)
        self.phases: list[tuple[float, str]] = [(0.0, "setup")]
        self.counts: dict[str, Counter[str]] = {}
        self.lua: dict[str, Counter[str]] = {}
        self.last_ts = 0.0
        self.stopped = False
        self.conn.send("MONITOR")

    def set_phase(self, name: str) -> None:
        self.phases.append((time.time(), name))

    def _phase(self, ts: float) -> str:
        name = "setup"
        for start, phase in self.phases:
            if ts >= start:
                name = phase
        return name

    def run(self) -> None:
        try:
            while not self.stopped:
                line = self.conn.read()
                if not isinstance(line, str):
                    continue
                m = LINE.match(line)
                if not m:
                    continue
                ts = float(line.split(" ", 1)[0])
                self.last_ts = ts
                if m.group(1) != self.db:
                    continue
                target = self.lua if m.group(2) == "lua" else self.counts
                target.setdefault(self._phase(ts), Counter())[m.group(3).upper()] += 1
        except (OSError, ConnectionError, ValueError):
            pass

    def catch_up(self, timeout: float = 10.0) -> None:
        """Wait until lines stamped after now have been read."""
        until, deadline = time.time(), time.monotonic() + timeout
        with Redis(*self.conn.sock.getpeername()[:2]) as r:
            while self.last_ts < until and time.monotonic() < deadline:
                r.execute("PING")
                time.sleep(0.05)

    def stop(self) -> None:
        self.stopped = True
        # Wake the reader first: closing the file while run() blocks in readline() (an idle
        # server sends no MONITOR lines) waits for the file's lock, i.e. forever.
        with contextlib.suppress(OSError):
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.join(timeout=5.0)
        self.conn.close()


def probe(runner: PeerRunner, results: bool, log: Callable[[str], None],
          n: int = 2000) -> dict[str, Any]:
    a, opts = runner.adapter, runner.opts
    hostport, _, db = opts.redis_url.split("://", 1)[1].partition("/")
    host, _, port = hostport.partition(":")
    out: dict[str, Any] = {"peer": a.name, "results": results, "n": n}
    spec = WorkerSpec(1, 100, results)
    run_dir, ledger_dir, workdir, logs = runner._dirs("probe")
    env = runner._env(spec, ledger_dir, workdir)
    mon = Monitor(host, int(port or 6379), int(db))
    mon.start()
    group = ProcessGroup(uuid.uuid4().hex, logs)
    try:
        runner._reset(env)
        time.sleep(0.3)
        mon.set_phase("enqueue")
        runner._app(["enqueue", "--n", str(n)], env, timeout=opts.time_limit)
        time.sleep(0.5)
        with Redis(host, int(port or 6379)) as r:
            mon.set_phase("idle")
            r0 = int(r.info("stats")["total_reads_processed"])
            time.sleep(1.0)
            r1 = int(r.info("stats")["total_reads_processed"])
            idle_rate = (r1 - r0 - 1) / 1.0
            mon.set_phase("worker")
            reader = LedgerReader(ledger_dir)
            t0 = time.monotonic()
            for k, cmd in enumerate(a.worker_commands(runner.venv, spec)):
                group.spawn(cmd, env, BENCH_DIR, f"worker{k}")
            runner._wait(reader, group, range(n), t0 + opts.time_limit)
            r2 = int(r.info("stats")["total_reads_processed"])
            elapsed = time.monotonic() - t0
        mon.set_phase("after")
        group.kill()
        mon.catch_up()
        worker = mon.counts.get("worker", Counter())
        out.update(
            enqueue_cmds_per_job=sum(mon.counts.get("enqueue", Counter()).values()) / n,
            enqueue_lua_cmds_per_job=sum(mon.lua.get("enqueue", Counter()).values()) / n,
            worker_cmds_per_job=sum(worker.values()) / n,
            worker_lua_cmds_per_job=sum(mon.lua.get("worker", Counter()).values()) / n,
            worker_reads_per_job=max(0.0, r2 - r1 - 1 - idle_rate * elapsed) / n,
            worker_top={k: v / n for k, v in worker.most_common(12)},
            enqueue_top={k: v / n for k, v in mon.counts.get("enqueue", Counter())
                         .most_common(8)},
        )
        log(f"[probe] {a.name} results={results}: enqueue {out['enqueue_cmds_per_job']:.3f} "
            f"cmds/job (+{out['enqueue_lua_cmds_per_job']:.2f} in Lua); "
            f"worker {out['worker_cmds_per_job']:.2f} cmds/job "
            f"(+{out['worker_lua_cmds_per_job']:.2f} in Lua), "
            f"~{out['worker_reads_per_job']:.2f} reads/job; {dict(worker.most_common(6))}")
    except (RunFailure, OSError, KeyError, ValueError) as exc:
        out["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log(f"[probe] {a.name}: FAILED {out['error']}")
    finally:
        group.kill()
        mon.stop()
        runner._cleanup(run_dir, "error" not in out)
    return out
