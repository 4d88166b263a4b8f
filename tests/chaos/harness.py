"""Processes, producer and drain for chaos tests; nothing here knows a broker technology.

A :class:`Cluster` starts real worker processes for one broker URL (``python -m
conveyor.worker.supervisor '<spec>'`` children, or a whole ``conveyor worker``
supervisor) and ``conveyor scheduler`` processes, each in its own process group with its
log in a file. A :class:`Producer` enqueues ``probe`` calls and writes the ledger.
:func:`drain` waits until the broker is empty and records its dead letters and results,
so :func:`~tests.chaos.ledger.check` can judge the run.
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
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from conveyor import Conveyor, ResultMissing
from conveyor.brokers.base import QueueDepth
from conveyor.result import Result
from conveyor.task import Task
from tests.chaos.ledger import LEDGER_DIR_ENV, Ledger, Record, Report, check, read_ledger
from tests.conftest import eventually, eventually_blocking

__all__ = [
    "APP",
    "ROOT",
    "Cluster",
    "Proc",
    "Producer",
    "TcpProxy",
    "drain",
    "ends",
    "in_flight",
    "judge",
    "starts",
    "wait_for",
    "wait_for_ledger",
]

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.chaos.chaos_app:app"
_STARTED = re.compile(rb"worker \S+:(\d+):\w+ started")
_SCHEDULER_STARTED = re.compile(rb"scheduler \S+ started")

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

    def wait_logged(self, pattern: str | re.Pattern[bytes], timeout: float = 20.0) -> bytes:
        """Wait until the log has a line matching ``pattern``; returns the first match."""
        regex = re.compile(pattern.encode()) if isinstance(pattern, str) else pattern

        def logged() -> bytes | None:
            found = regex.search(self.log_path.read_bytes())
            if found:
                return found.group(0)
            self._assert_running()
            return None

        return self._wait(logged, timeout, f"no {regex.pattern!r} in the log")

    def terminate(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout``; the exit code, or None if it did not exit
        (then the group is SIGKILLed)."""
        code: int | None = None
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.popen.wait(timeout)
        else:
            code = self.popen.returncode
        self.kill()
        return code

    def wait_started(self, count: int = 1, timeout: float = 20.0) -> list[int]:
        def started() -> list[int] | None:
            pids = self.started_pids()
            if len(pids) >= count:
                return pids
            self._assert_running()
            return None

        return self._wait(started, timeout, f"{count} worker(s) not started")

    def _assert_running(self) -> None:
        if self.popen.poll() is not None:
            raise _Exited(f"{self} exited with {self.popen.returncode}:\n{self.log()}")

    def _wait(self, check: Callable[[], T | None], timeout: float, missing: str) -> T:
        try:
            return eventually_blocking(check, timeout=timeout, every=0.05)  # type: ignore[return-value]
        except _Exited:
            raise
        except AssertionError:
            raise AssertionError(f"{self}: {missing}:\n{self.log()}") from None


class _Exited(AssertionError):
    """The process being waited on exited."""


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
        self,
        concurrency: int = 8,
        *,
        grace: float | None = None,
        wait: bool = True,
        app: str = APP,
    ) -> Proc:
        """One worker process, exactly as ``conveyor worker`` starts each child."""
        spec = {"app": app, "concurrency": concurrency, "grace": grace, "log_level": "INFO"}
        argv = [sys.executable, "-m", "conveyor.worker.supervisor", json.dumps(spec)]
        proc = self._start(argv, "worker")
        if wait:
            proc.wait_started()
        return proc

    def supervisor(
        self, workers: int, concurrency: int = 8, *, wait: bool = True, app: str = APP
    ) -> Proc:
        """``conveyor worker APP --workers N``: restarts children that die."""
        argv = [sys.executable, "-m", "conveyor.cli", "worker", app]
        argv += ["--workers", str(workers), "--concurrency", str(concurrency)]
        proc = self._start(argv, "supervisor")
        if wait:
            proc.wait_started(workers)
        return proc

    def scheduler(self, app: str, *, skip_first_run: bool = False, wait: bool = True) -> Proc:
        """``conveyor scheduler APP``; waits for its "scheduler ... started" line."""
        argv = [sys.executable, "-m", "conveyor.cli", "scheduler", app]
        if skip_first_run:
            argv.append("--skip-first-run")
        proc = self._start(argv, "scheduler")
        if wait:
            proc.wait_logged(_SCHEDULER_STARTED)
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
                await asyncio.sleep(0.1)  # sleep: the producer's pause while the broker heals
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
                # sleep: a steady load is paced by real time
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
    busy: list[QueueDepth] | None = None

    async def drained() -> bool:
        nonlocal busy
        try:
            depths = await app.broker.queue_depths()
        except Exception:  # the broker is still healing
            depths = None
        busy = None if depths is None else [d for d in depths if d.ready or d.delayed or d.running]
        return busy == [] and time.time() >= quiet_until

    try:
        await eventually(drained, timeout=timeout, every=0.1)
    except AssertionError:
        raise AssertionError(
            f"hang: the queues did not drain within {timeout:.0f}s: {busy}"
        ) from None
    for entry in await app.broker.dead_letters(limit=1_000_000):
        ledger.dlq(entry.id, entry.reason, entry.attempts)
    for task_id in ids:
        try:
            result = await app.handle(task_id).result()
        except ResultMissing:
            continue
        ledger.result(task_id, result.status.value)
    return time.monotonic() - started


class _Link:
    __slots__ = ("silent", "writers")

    def __init__(self) -> None:
        self.silent = False
        self.writers: list[asyncio.StreamWriter] = []


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``host:target_port`` on a thread (and event
    loop) of its own, so a test that blocks does not stall it.

    :meth:`silence` turns every connection open now into a black hole: bytes both ways
    are read and dropped while the sockets stay open, as with a dead NAT entry or a
    half-open TCP connection; a client waiting for a reply waits for ever. Connections
    opened afterwards are forwarded as before.
    """

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.port = 0
        self.accepted = 0
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> TcpProxy:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def silence(self) -> int:
        """Black-hole the open connections; returns how many."""
        return asyncio.run_coroutine_threadsafe(self._silence(), self._loop).result(10)

    def close(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _silence(self) -> int:
        for link in self._links:
            link.silent = True
        return len(self._links)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self._links:
            for writer in link.writers:
                writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.close()
            return
        link = _Link()
        link.writers = [writer, up_writer]
        self._links.add(link)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, link), self._pipe(up_reader, writer, link)
            )
        finally:
            self._links.discard(link)

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        try:
            while data := await reader.read(65536):
                if not link.silent:
                    writer.write(data)
                    await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()  # one side's end ends the other's


def wait_for(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``condition`` until it returns something truthy."""
    return eventually_blocking(condition, timeout=timeout, what=what)  # type: ignore[return-value]


async def wait_for_ledger(
    directory: Path, condition: Callable[[list[Record]], T | None], timeout: float, what: str
) -> T:
    """Poll the ledger (without blocking the event loop) until ``condition`` holds."""
    return await eventually(  # type: ignore[return-value]
        lambda: condition(read_ledger(directory)), timeout=timeout, what=what, every=0.02
    )


def starts(records: list[Record], pid: int | None = None) -> list[Record]:
    """The ``exec_start`` records (of ``pid``)."""
    return [r for r in records if r["ev"] == "exec_start" and (pid is None or r["pid"] == pid)]


def ends(records: list[Record], pid: int | None = None) -> list[Record]:
    """The ``exec_end`` records (of ``pid``)."""
    return [r for r in records if r["ev"] == "exec_end" and (pid is None or r["pid"] == pid)]


def in_flight(records: list[Record], pid: int) -> set[str]:
    """Task ids started on ``pid`` and not (yet) ended there."""
    return {r["id"] for r in starts(records, pid)} - {r["id"] for r in ends(records, pid)}


def judge(cluster: Cluster) -> Report:
    """Check the ledger, print the summary (``pytest -s`` shows it) and fail on a
    broken guarantee."""
    report = check(cluster.ledger())
    print(f"\n[chaos] {report.summary()}")
    try:
        report.assert_valid()
    except AssertionError:
        print(cluster.logs()[-20000:])
        raise
    return report


@dataclass(frozen=True)
class PausedWorkerRun:
    """What :func:`pause_a_worker_mid_task` saw, for a broker's own bounds."""

    task_id: str
    owner_pid: int
    result: Result[Any]
    report: Report
    takeover_after: float
    """Seconds from the SIGSTOP to the new owner's start."""
    resumed_after: float
    """Seconds from the SIGSTOP to the SIGCONT."""
    zombie_finished_after: float
    """Seconds from the SIGCONT to the zombie's end of the task."""
    owner_running_at_refusal: bool
    """The new owner was still running when the zombie's settlement was refused."""
    zombie_log: str


async def pause_a_worker_mid_task(
    url: str, cluster: Callable[..., Cluster], nemesis: Ledger, settings: dict[str, float]
) -> PausedWorkerRun:
    """A worker is SIGSTOPped 2 s into an 8 s task for 3.5 leases; a second worker takes
    the task over; the zombie resumes and finishes. Checked here, on every broker: the
    zombie's run ends ok, its settlement is refused ("lease lost before settling"), its
    result is never stored, and the ledger holds (:func:`judge`)."""
    lease = settings["lease"]
    workers = cluster(url, **settings)
    zombie = workers.worker(concurrency=2)
    async with Producer(url, nemesis) as producer:
        task_id = await producer.enqueue("sleep", 8000)
        (first,) = await wait_for_ledger(
            workers.ledger_dir, lambda rs: starts(rs, zombie.pid), 20, "the task to start"
        )
        owner = workers.worker(concurrency=2)
        # pause 2 s or more into the task: the zombie then ends well before the new owner
        # sleep: the fault's moment on the task's timeline (real processes, real time)
        await asyncio.sleep(max(first["t"] + 2.0 - time.time(), 0))
        paused_at = time.time()
        fid = nemesis.fault_start("sigstop", zombie.pid)
        zombie.send(signal.SIGSTOP)
        try:
            takeover = await wait_for_ledger(
                workers.ledger_dir, lambda rs: starts(rs, owner.pid), 15, "the takeover"
            )
            # sleep: the pause lasts 3.5 leases of the server's (real) clock
            await asyncio.sleep(max(paused_at + 3.5 * lease - time.time(), 0))
        finally:
            zombie.send(signal.SIGCONT)
            nemesis.fault_end(fid, "sigstop", zombie.pid)
        resumed_at = time.time()
        (zombie_end,) = await wait_for_ledger(
            workers.ledger_dir, lambda rs: ends(rs, zombie.pid), 15, "the zombie to finish"
        )
        assert zombie_end["outcome"] == "ok"
        # its settlement was refused: the worker says so once it came back
        await asyncio.to_thread(
            zombie.wait_logged, rf"task {task_id}: lease lost before settling", 15
        )
        owner_running = not ends(workers.ledger(), owner.pid)
        assert await producer.app.result_store.get(task_id) is None, "the zombie's result"
        result = await producer.probe.app.handle(task_id).wait_result(timeout=15)
        await drain(producer.app, nemesis, [task_id], timeout=15)
    return PausedWorkerRun(
        task_id=task_id,
        owner_pid=owner.pid,
        result=result,
        report=judge(workers),
        takeover_after=takeover[0]["t"] - paused_at,
        resumed_after=resumed_at - paused_at,
        zombie_finished_after=zombie_end["t"] - resumed_at,
        owner_running_at_refusal=owner_running,
        zombie_log=zombie.log(),
    )
