"""Processes, producer and drain for chaos tests; nothing here knows a broker technology.

A :class:`Cluster` starts real worker processes for one broker URL (``python -m
conveyor.worker.supervisor '<spec>'`` children, or a whole ``conveyor worker``
supervisor), each in its own process group with its log in a file. A :class:`Producer`
enqueues ``probe`` calls and writes the ledger. :func:`drain` waits until the broker is
empty and records its dead letters and results, so :func:`~tests.chaos.ledger.check` can
judge the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, TypeVar

from conveyor import Conveyor
from conveyor.task import Task
from tests.chaos.ledger import LEDGER_DIR_ENV, Ledger, Record, read_ledger

__all__ = ["APP", "ROOT", "Cluster", "Proc", "Producer", "drain", "wait_for", "wait_for_ledger"]

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.chaos.chaos_app:app"
_STARTED = re.compile(rb"worker \S+:(\d+):\w+ started")

T = TypeVar("T")


class Proc:
    """A process started in a session of its own, so its whole group can be killed."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - closed by kill()
        self.popen = subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    def __repr__(self) -> str:
        return f"<Proc {self.pid} {self.log_path.name}>"

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def send(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the process group (children included) and reap the process."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it died on its own
                os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_bytes().decode(errors="replace")

    def started_pids(self) -> list[int]:
        """Pids of the workers that logged "worker ... started" (children too)."""
        return [int(m) for m in _STARTED.findall(self.log_path.read_bytes())]

    def wait_started(self, count: int = 1, timeout: float = 20.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while True:
            pids = self.started_pids()
            if len(pids) >= count:
                return pids
            if self.popen.poll() is not None:
                raise AssertionError(f"{self} exited with {self.popen.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self}: {count} worker(s) not started:\n{self.log()}")
            time.sleep(0.05)


class Cluster:
    """Worker processes on one broker URL, with compressed timeouts from ``settings``
    (``{"lease": 2, ...}`` becomes ``CONVEYOR_LEASE=2`` in their environment)."""

    def __init__(
        self, broker_url: str, workdir: Path, ledger_dir: Path, settings: dict[str, float]
    ) -> None:
        self.broker_url = broker_url
        self.workdir = workdir
        self.ledger_dir = ledger_dir
        self.settings = settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        env.update({f"CONVEYOR_{k.upper()}": str(v) for k, v in settings.items()})
        env["CONVEYOR_BROKER_URL"] = broker_url
        env[LEDGER_DIR_ENV] = str(ledger_dir)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        self.env = env
        self.procs: list[Proc] = []

    def _start(self, argv: list[str], name: str) -> Proc:
        log = self.workdir / f"{name}-{len(self.procs)}.log"
        proc = Proc(argv, self.env, log)
        self.procs.append(proc)
        return proc

    def worker(
        self, concurrency: int = 8, *, grace: float | None = None, wait: bool = True
    ) -> Proc:
        """One worker process, exactly as ``conveyor worker`` starts each child."""
        spec = {"app": APP, "concurrency": concurrency, "grace": grace, "log_level": "INFO"}
        argv = [sys.executable, "-m", "conveyor.worker.supervisor", json.dumps(spec)]
        proc = self._start(argv, "worker")
        if wait:
            proc.wait_started()
        return proc

    def supervisor(self, workers: int, concurrency: int = 8, *, wait: bool = True) -> Proc:
        """``conveyor worker APP --workers N``: restarts children that die."""
        argv = [sys.executable, "-m", "conveyor.cli", "worker", APP]
        argv += ["--workers", str(workers), "--concurrency", str(concurrency)]
        proc = self._start(argv, "supervisor")
        if wait:
            proc.wait_started(workers)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()

    def logs(self) -> str:
        return "\n".join(f"==== {p}\n{p.log()}" for p in self.procs)

    def ledger(self) -> list[Record]:
        return read_ledger(self.ledger_dir)


class Producer:
    """Enqueues ``probe`` calls, writing enq_invoke / enq_ok / enq_fail; a failed enqueue
    is retried with the same task id (so a call that did land is not duplicated)."""

    def __init__(self, broker_url: str, ledger: Ledger) -> None:
        from tests.chaos import chaos_app

        self.app = Conveyor(broker_url, environ={})
        self.probe: Task[Any, Any] = self.app.register(chaos_app.probe.fn, chaos_app.probe.options)
        self.ledger = ledger

    async def __aenter__(self) -> Producer:
        await self.app.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.app.close()

    async def enqueue(
        self,
        behavior: str = "sleep",
        ms: int = 0,
        *,
        task_id: str | None = None,
        retry_for: float = 30.0,
    ) -> str:
        task_id = task_id or uuid.uuid4().hex
        self.ledger.enq_invoke(task_id)
        deadline = time.monotonic() + retry_for
        while True:
            try:
                await self.probe.with_options(task_id=task_id).kiq(task_id, behavior, ms)
            except Exception as exc:
                self.ledger.enq_fail(task_id, repr(exc))
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
                continue
            self.ledger.enq_ok(task_id)
            return task_id

    async def enqueue_many(
        self,
        calls: Iterable[tuple[str, int]],
        *,
        parallel: int = 16,
        rate: float | None = None,
        retry_for: float = 30.0,
    ) -> list[str]:
        """Enqueue ``(behavior, ms)`` calls, ``parallel`` at a time, and no faster than
        ``rate`` calls per second when given (a steady load); ids in call order."""
        gate = asyncio.Semaphore(parallel)
        loop = asyncio.get_running_loop()
        begin = loop.time()

        async def one(index: int, behavior: str, ms: int) -> str:
            if rate is not None:
                await asyncio.sleep(max(begin + index / rate - loop.time(), 0.0))
            async with gate:
                return await self.enqueue(behavior, ms, retry_for=retry_for)

        return list(await asyncio.gather(*(one(i, b, ms) for i, (b, ms) in enumerate(calls))))


async def drain(
    app: Conveyor,
    ledger: Ledger,
    ids: Iterable[str],
    *,
    quiet_until: float = 0.0,
    timeout: float = 30.0,
) -> float:
    """Wait until no queue holds a ready, delayed or leased message and ``time.time()``
    is past ``quiet_until``; then record the dead letters and the results of ``ids``.
    A queue that never empties is a hang (G6) and fails. Returns how long it waited."""
    started = time.monotonic()
    while True:
        try:
            depths = await app.broker.queue_depths()
        except Exception:  # the broker is still healing
            depths = None
        busy = None if depths is None else [d for d in depths if d.ready or d.delayed or d.running]
        if busy == [] and time.time() >= quiet_until:
            break
        if time.monotonic() - started > timeout:
            raise AssertionError(f"hang: the queues did not drain within {timeout:.0f}s: {busy}")
        await asyncio.sleep(0.1)
    for entry in await app.broker.dead_letters(limit=1_000_000):
        ledger.dlq(entry.id, entry.reason, entry.attempts)
    for task_id in ids:
        result = await app.get_result(task_id)
        if result is not None:
            ledger.result(task_id, result.status.value)
    return time.monotonic() - started


def wait_for(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``condition`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.02)


async def wait_for_ledger(
    directory: Path, condition: Callable[[list[Record]], T | None], timeout: float, what: str
) -> T:
    """Poll the ledger (without blocking the event loop) until ``condition`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition(read_ledger(directory))
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)
