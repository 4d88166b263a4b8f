"""``conveyor worker``: N worker processes, restarted when they crash, recycled after
``--max-tasks-per-child`` tasks, and restarted on code changes with ``--reload``; with
``--with-scheduler``, one scheduler process too, kept alive the same way.

How a child starts. ``conveyor worker`` imports the app in the supervisor (to fail fast on
a bad path), and the supervisor *forks* each child from itself: the child starts with
Python, Conveyor, the broker's client and the user's tasks already imported, in about a
millisecond, instead of a second interpreter that imports them all again (that was two
thirds of the start-up; bench/startup.py measures it). The supervisor never connects to
the broker and never starts a thread or an event loop, so every fork, restarts included,
starts from the same clean state; each child opens its own connections, and Python
re-seeds the ``random`` module in it (conveyor.retry re-seeds the backoff jitter's
generator). When its worker has stopped, a child runs the ``atexit`` handlers, as the
interpreter that imported the app would (those the app registered at import included),
then ends with ``os._exit``: the supervisor's frames are not unwound in it.

A child is a fresh interpreter instead, ``python -m conveyor.worker.supervisor '<json
spec>'``, which imports the app by its ``module:attribute`` path, when forking would be
wrong or unsafe: with ``--reload`` (the supervisor's copy of the code is what changed,
and it runs the file watcher's thread), when the supervisor runs any other thread
(``--metrics-port`` serves metrics from one; so may a library the app imported), on
macOS (its system frameworks are not fork-safe) and where there is no ``os.fork``. The
spec's ``kind`` says what the child runs: ``"worker"`` (the default) or ``"scheduler"``.

Each child holds one end of a socket pair to its supervisor. Through it the child
reports that it has started (then the supervisor logs ``started worker process PID``),
or why it could not start. It is also the child's lifeline: when the supervisor dies,
even by SIGKILL, the child reads end-of-file and stops gracefully, as on SIGTERM.

A child's exit code tells the supervisor how it ended:

=====  ===============================  =========================================
code   meaning                          the supervisor
=====  ===============================  =========================================
0      recycled after its max tasks     starts a replacement at once
78     could not start: import,         stops every child and exits with 78,
       configuration or startup         unless a child of that kind has run
       handler error (EX_CONFIG)        before (then: as a crash); with --reload
                                        it waits for the next code change
69     could not start: broker or       as 78, exit code 69
       result store unreachable
       (EX_UNAVAILABLE)
other  crashed after a good start       restarts it after a backoff
=====  ===============================  =========================================

A child that cannot start says why in one line (the error's own message; for a plain
exception, a traceback of the user's frames only) instead of a traceback through the
supervisor, asyncio and Conveyor; ``conveyor worker`` prints it as its ``Error:`` line.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from conveyor.brokers import shown_url
from conveyor.errors import BrokerUnavailable, ConveyorError

if TYPE_CHECKING:
    from conveyor.app import Conveyor

__all__ = [
    "BROKER_UNAVAILABLE_EXIT_CODE",
    "RECYCLE_EXIT_CODE",
    "STARTUP_FAILED_EXIT_CODE",
    "SchedulerSpec",
    "Supervisor",
    "WorkerSpec",
    "connect_waiting",
    "unreachable_reason",
]

log = logging.getLogger("conveyor.supervisor")
wait_log = logging.getLogger("conveyor.cli")  # where --wait-for-broker's attempts are logged

# a child that exits with this code finished its max_tasks and asks to be replaced
RECYCLE_EXIT_CODE = 0
# a child that exits with one of these failed before it started (sysexits.h codes)
STARTUP_FAILED_EXIT_CODE = 78  # EX_CONFIG: import, configuration, startup handler
BROKER_UNAVAILABLE_EXIT_CODE = 69  # EX_UNAVAILABLE: broker or result store unreachable
_NOT_STARTED = frozenset({STARTUP_FAILED_EXIT_CODE, BROKER_UNAVAILABLE_EXIT_CODE})
# a crash: an exception escaped the child after a good start
_CRASHED_EXIT_CODE = 1

_FIRST_PAUSE = 0.5
_MAX_PAUSE = 10.0
# the longest reason a child sends (a traceback of the user's frames fits many times)
_MAX_REASON = 16_000


@dataclass(frozen=True)
class WorkerSpec:
    """What each worker process runs."""

    app: str
    modules: list[str] = field(default_factory=list)
    concurrency: int | None = None
    queues: list[str] | None = None
    grace: float | None = None
    max_tasks: int | None = None
    log_level: str = "INFO"
    log_format: str = "text"
    metrics: bool = False  # count task metrics (PROMETHEUS_MULTIPROC_DIR is in the env)

    kind = "worker"


@dataclass(frozen=True)
class SchedulerSpec:
    """What the scheduler process runs (``conveyor worker --with-scheduler``)."""

    app: str
    modules: list[str] = field(default_factory=list)
    skip_first_run: bool = False
    log_level: str = "INFO"
    log_format: str = "text"
    metrics: bool = False

    kind = "scheduler"


ChildSpec = WorkerSpec | SchedulerSpec


async def connect_waiting(
    connect: Callable[[], Awaitable[None]],
    url: str,
    wait: float,
    *,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    quiet: bool = False,
) -> None:
    """``await connect()``; while it raises :class:`BrokerUnavailable`, try again after
    0.5 s, doubling up to 10 s, for up to ``wait`` seconds, logging one line per failed
    attempt (none when ``quiet``). Then the last error is raised, saying how long it
    waited. Other errors (a ConfigurationError) are raised at once: waiting does not fix
    them.

    >>> await connect_waiting(app.connect, app.settings.broker_url, 30)  # doctest: +SKIP
    """
    shown = shown_url(url)
    started = monotonic()
    pause = _FIRST_PAUSE
    attempt = 1
    while True:
        try:
            await connect()
        except BrokerUnavailable as exc:
            remaining = started + wait - monotonic()
            if wait <= 0:
                raise
            if remaining <= 0:
                raise BrokerUnavailable(
                    f"{str(exc).rstrip('.')} (gave up after {attempt} attempts in "
                    f"{monotonic() - started:.1f}s)"
                ) from exc
            delay = min(pause, remaining)
            if not quiet:
                wait_log.warning(
                    "attempt %d: %s; retrying in %.1fs (waiting up to %gs for the broker)",
                    attempt,
                    str(exc).rstrip("."),
                    delay,
                    wait,
                )
            await sleep(delay)
            pause = min(pause * 2, _MAX_PAUSE)
            attempt += 1
        else:
            if attempt > 1 and not quiet:
                wait_log.info(
                    "broker %s reachable after %d attempts (%.1fs)",
                    shown,
                    attempt,
                    monotonic() - started,
                )
            return


def unreachable_reason(exc: BrokerUnavailable, wait: float) -> str:
    """What ``conveyor worker`` and ``conveyor scheduler`` say about an unreachable
    broker: its error, and what to do about it."""
    todo = (
        "start it, fix the URL, or pass --wait-for-broker SECONDS to wait for it"
        if wait <= 0
        else "start it, or wait longer (--wait-for-broker)"
    )
    return f"{str(exc).rstrip('.')}; {todo}"


class _Forked:
    """A forked child, with the part of ``subprocess.Popen``'s interface the supervisor
    uses (``poll``, ``wait``, ``send_signal``, ``kill``, ``returncode``)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored): as Popen does
                self.returncode = 0
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0005
        while (code := self.poll()) is None:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise subprocess.TimeoutExpired(f"process {self.pid}", timeout or 0.0)
                delay = min(delay, remaining)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return code

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | _Forked
    started: float
    channel: socket.socket | None  # the supervisor's end: the child's reports arrive here
    parked: bool = False  # could not start; with --reload, left exited until a change
    ready: bool = False  # it reported that it started
    failure: str | None = None  # why it could not start, as it reported
    received: bytes = b""

    def read_reports(self) -> list[dict[str, Any]]:
        """What the child sent since the last read; closes the channel at its end."""
        if self.channel is None:
            return []
        chunks = [self.received]
        while True:
            try:
                chunk = self.channel.recv(65536)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.close_channel()
                break
            chunks.append(chunk)
        *lines, self.received = b"".join(chunks).split(b"\n")
        reports = []
        for line in lines:
            try:
                reports.append(json.loads(line))
            except ValueError:
                log.warning("%s %d sent a malformed report: %r", self.spec.kind, self.pid, line)
        return reports

    def close_channel(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    @property
    def pid(self) -> int:
        return self.process.pid


class Supervisor:
    """Keeps ``processes`` workers, and the ``scheduler`` process if one is given, alive
    until SIGTERM/SIGINT, or until a child that never ran could not start (then
    :attr:`failure` says why).

    ``app`` is the app the spec names, already imported: children are forked from this
    process when it is given (and nothing rules forking out, see the module's doc), else
    each is a fresh interpreter. ``wait_for_broker`` is how long the first children
    wait for an unreachable broker (``--wait-for-broker``)."""

    def __init__(
        self,
        spec: WorkerSpec,
        processes: int = 1,
        *,
        app: Conveyor | None = None,
        reload: bool = False,
        reload_dirs: list[Path] | None = None,
        stop_timeout: float | None = None,
        restart_backoff_cap: float = 10.0,
        scheduler: SchedulerSpec | None = None,
        child_env: Mapping[str, str] | None = None,
        on_child_exit: Callable[[int], None] | None = None,
        wait_for_broker: float = 0.0,
    ) -> None:
        self.spec = spec
        self.app = app
        # extra environment for the children (PROMETHEUS_MULTIPROC_DIR), and who is told
        # the pid of every child that exited (to tidy its metric files)
        self.child_env = dict(child_env or {})
        self.on_child_exit = on_child_exit
        self.scheduler = scheduler
        self.processes = max(processes, 1)
        self.reload = reload
        self.reload_dirs = reload_dirs or [Path.cwd()]
        grace = spec.grace if spec.grace is not None else 30.0
        self.stop_timeout = stop_timeout if stop_timeout is not None else grace + 10.0
        self.restart_backoff_cap = restart_backoff_cap
        self.wait_for_broker = wait_for_broker
        self.failure: str | None = None
        """Why a child that never ran could not start, when that stopped the supervisor."""
        self._children: list[_Child] = []
        self._channels: list[socket.socket] = []  # every open supervisor end, for forks
        self._stopping = threading.Event()
        self._reload_requested = threading.Event()
        # consecutive crashes per kind: a crash-looping scheduler does not slow down the
        # restart of a worker, nor the other way round
        self._crashes = {WorkerSpec.kind: 0, SchedulerSpec.kind: 0}
        # whether a child of that kind has run (exited other than "could not start"):
        # after that, a child that cannot start is a transient fault, retried like a crash
        self._has_run = {WorkerSpec.kind: False, SchedulerSpec.kind: False}
        self._exit_code = 0
        self._announced = False
        self._told_why_not_fork = False

    def run(self) -> int:
        """Run until told to stop; returns the exit code for the CLI: 0, or the code of
        the child that could not start."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        watcher = self._start_reload_watcher() if self.reload else None
        try:
            self._children = self._spawn_all()
            while not self._stopping.is_set():
                if self._reload_requested.is_set():
                    self._reload_requested.clear()
                    log.info(
                        "code changed: restarting %d worker(s)%s",
                        self.processes,
                        " and the scheduler" if self.scheduler is not None else "",
                    )
                    self._stop_children()
                    self._children = self._spawn_all()
                self._read_reports()
                self._replace_exited()
                self._wait_for_news(0.2)
        finally:
            self._stop_children()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if watcher is not None:
                watcher.join(timeout=2)
        return self._exit_code

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("received %s: stopping workers gracefully", signal.Signals(signum).name)
        self._stopping.set()

    def _wait_for_news(self, timeout: float) -> None:
        """Sleep up to ``timeout``, waking when a child reports or exits (its channel
        closes)."""
        channels = [c.channel for c in self._children if c.channel is not None]
        if not channels:
            self._stopping.wait(timeout)
            return
        with contextlib.suppress(OSError, ValueError):  # a channel closed: look next turn
            select.select(channels, [], [], timeout)

    # -- starting children ---------------------------------------------------------

    def _spawn_all(self) -> list[_Child]:
        children = [self._spawn(self.spec, quiet=index > 0) for index in range(self.processes)]
        if self.scheduler is not None:
            children.append(self._spawn(self.scheduler, quiet=True))
        return children

    def _spawn(self, spec: ChildSpec, *, quiet: bool = False) -> _Child:
        # only children that none of their kind has preceded wait for the broker, and one
        # of them logs its attempts; after a good run, one that cannot connect is retried
        wait = 0.0 if self._has_run[spec.kind] else self.wait_for_broker
        self._channels = [c for c in self._channels if c.fileno() != -1]
        ours, theirs = socket.socketpair()
        try:
            if self._can_fork():
                process: subprocess.Popen[bytes] | _Forked = self._fork(
                    spec, ours, theirs, wait, quiet
                )
            else:
                process = self._start_interpreter(spec, theirs, wait, quiet)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._channels.append(ours)
        log.debug("%s process %d is starting", spec.kind, process.pid)
        return _Child(spec, process, time.monotonic(), ours)

    def _can_fork(self) -> bool:
        # macOS: system frameworks that an import may have initialized are not fork-safe
        # (Python's multiprocessing stopped forking there for the same reason)
        if self.app is None or self.reload or not hasattr(os, "fork") or sys.platform == "darwin":
            return False
        if threading.active_count() == 1:
            return True
        if not self._told_why_not_fork:
            self._told_why_not_fork = True
            current = threading.current_thread()
            names = ", ".join(t.name for t in threading.enumerate() if t is not current)
            log.info(
                "starting each child as a fresh interpreter (slower): this process runs "
                "other threads (%s), and forking it could deadlock the children",
                names,
            )
        return False

    def _fork(
        self, spec: ChildSpec, ours: socket.socket, theirs: socket.socket, wait: float, quiet: bool
    ) -> _Forked:
        assert self.app is not None
        _import_what_runs(spec)  # once, here: every fork, restarts too, starts with it
        sys.stdout.flush()  # else what is buffered would be written by both processes
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            return _Forked(pid)
        # the child: it never returns from here
        code = _CRASHED_EXIT_CODE
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a stop before the worker's own
            signal.signal(signal.SIGINT, signal.default_int_handler)
            # the supervisor's ends, of this child's socket and its siblings': held open
            # here, they would keep a lifeline from reading end-of-file when it dies
            ours.close()
            for other in self._channels:
                other.close()
            code = _serve(spec, self.app, _Report(theirs), wait, quiet)
        except KeyboardInterrupt:  # Ctrl-C before the worker handles SIGINT itself
            code = 128 + signal.SIGINT
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                # the exit of the interpreter this child stands for: the handlers the app
                # registered when it was imported, and multiprocessing's (a process pool's
                # temporary directory), but not the unwinding of the supervisor's frames
                atexit._run_exitfuncs()
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _start_interpreter(
        self, spec: ChildSpec, channel: socket.socket, wait: float, quiet: bool
    ) -> subprocess.Popen[bytes]:
        fd = channel.fileno()
        payload = json.dumps(
            {
                "kind": spec.kind,
                **asdict(spec),
                "report_fd": fd,
                "wait_for_broker": wait,
                "quiet_wait": quiet,
            }
        )
        env = {**os.environ, **self.child_env} if self.child_env else None
        return subprocess.Popen(
            [sys.executable, "-m", "conveyor.worker.supervisor", payload], env=env, pass_fds=(fd,)
        )

    # -- what children report, and how they end ------------------------------------

    def _read_reports(self) -> None:
        for child in self._children:
            self._take_reports(child)

    def _take_reports(self, child: _Child) -> None:
        for report in child.read_reports():
            if report.get("started"):
                child.ready = True
                self._announce()
                log.info("started %s process %d", child.spec.kind, child.pid)
            elif "failed" in report:
                child.failure = str(report["failed"])[:_MAX_REASON]

    def _announce(self) -> None:
        """The start-up line, once the first child has started (a child that could not
        start prints only why)."""
        if self._announced or self.app is None:
            return
        self._announced = True
        settings = self.app.settings
        where = shown_url(settings.broker_url)
        if settings.result_url is not None:
            where += f" (results: {shown_url(settings.result_url)})"
        log.info(
            "starting %d worker process(es)%s on %s",
            self.processes,
            " and a scheduler" if self.scheduler is not None else "",
            where,
        )

    def _replace_exited(self) -> None:
        for index, child in enumerate(self._children):
            code = child.process.poll()
            if code is None or child.parked or self._stopping.is_set():
                continue
            kind = child.spec.kind
            self._take_reports(child)  # everything it sent before it exited
            child.close_channel()
            self._exited(child)
            if code not in _NOT_STARTED:
                self._has_run[kind] = True
            elif not self._could_not_start(child, code):
                continue
            if code == RECYCLE_EXIT_CODE:
                why = "recycled after its max tasks" if kind == WorkerSpec.kind else "exited"
                log.info("%s %d %s", kind, child.pid, why)
                self._crashes[kind] = 0
            else:
                self._crashes[kind] += 1
                pause = min(0.5 * 2 ** (self._crashes[kind] - 1), self.restart_backoff_cap)
                if time.monotonic() - child.started > 60:
                    self._crashes[kind], pause = 1, 0.5
                log.error(
                    "%s %d exited with code %d; restarting in %.1fs",
                    kind,
                    child.pid,
                    code,
                    pause,
                )
                if self._stopping.wait(pause):
                    return
            self._children[index] = self._spawn(child.spec)

    def _could_not_start(self, child: _Child, code: int) -> bool:
        """Handle a child that exited before it started; True when it is to be restarted
        like a crashed one."""
        kind, pid = child.spec.kind, child.pid
        reason = child.failure or f"it exited with code {code} before it started"
        if self.reload:
            log.error("%s process could not start: %s", kind, reason)
            log.error("%s %d could not start: waiting for a code change", kind, pid)
            child.parked = True
            return False
        if self._has_run[kind]:
            log.error("%s %d could not start: %s", kind, pid, reason)
            return True  # it ran before: the cause may pass (a broker restarting)
        if self.failure is None:  # the first one says why; the others are stopped
            self.failure = reason
            self._exit_code = code
        self._stopping.set()
        return False

    def _stop_children(self) -> None:
        for child in self._children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for child in self._children:
            remaining = max(deadline - time.monotonic(), 0.0)
            try:
                child.process.wait(remaining)
            except subprocess.TimeoutExpired:
                log.error(
                    "%s %d did not stop in %.0fs: killing it",
                    child.spec.kind,
                    child.pid,
                    self.stop_timeout,
                )
                child.process.kill()
                child.process.wait()
            if child.channel is not None:
                self._take_reports(child)
                child.close_channel()
            if not child.parked:  # a parked child was reported when it exited
                self._exited(child)
        self._channels = [c for c in self._channels if c.fileno() != -1]

    def _exited(self, child: _Child) -> None:
        if self.on_child_exit is None:
            return
        try:
            self.on_child_exit(child.pid)
        except Exception:
            log.exception("on_child_exit failed for process %d", child.pid)

    def _start_reload_watcher(self) -> threading.Thread:
        from watchfiles import PythonFilter, watch

        def watch_code() -> None:
            for _changes in watch(
                *self.reload_dirs, watch_filter=PythonFilter(), stop_event=self._stopping
            ):
                self._reload_requested.set()

        thread = threading.Thread(target=watch_code, name="conveyor-reload", daemon=True)
        thread.start()
        return thread


def _import_what_runs(spec: ChildSpec) -> None:
    """Import the modules a child of ``spec`` runs (the worker or the scheduler loop)."""
    scheduler = isinstance(spec, SchedulerSpec)
    importlib.import_module("conveyor.scheduler.loop" if scheduler else "conveyor.worker.consumer")


class _Report:
    """The child's end of its socket to the supervisor: it sends that the child started,
    or why it could not; and a thread watches it, to stop the child (SIGTERM, so that it
    drains gracefully) when the supervisor has died and the socket reads end-of-file."""

    def __init__(self, channel: socket.socket) -> None:
        self._channel = channel
        self._done = False
        watcher = threading.Thread(target=self._watch, name="conveyor-lifeline", daemon=True)
        watcher.start()

    def _watch(self) -> None:
        try:
            while self._channel.recv(1):  # the supervisor never writes: only its end
                pass
        except OSError:
            pass
        if not self._done:
            os.kill(os.getpid(), signal.SIGTERM)

    def _send(self, report: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # the supervisor is gone: the watcher stops us
            self._channel.sendall(json.dumps(report).encode() + b"\n")

    def started(self) -> None:
        self._send({"started": True})

    def could_not_start(self, reason: str) -> None:
        self._send({"failed": reason[:_MAX_REASON]})

    def close(self) -> None:
        self._done = True
        with contextlib.suppress(OSError):
            self._channel.shutdown(socket.SHUT_RDWR)  # wakes the watcher's recv()
        self._channel.close()


def child_main(payload: str) -> int:
    """Entry point of a child that is a fresh interpreter (``python -m
    conveyor.worker.supervisor '<json spec>'``): a worker, or the scheduler. Returns its
    exit code; one that fails before it has started says why in one line and returns
    :data:`STARTUP_FAILED_EXIT_CODE` or :data:`BROKER_UNAVAILABLE_EXIT_CODE`."""
    from conveyor.cli import configure_logging

    fields: dict[str, Any] = json.loads(payload)
    report_fd: int | None = fields.pop("report_fd", None)
    wait: float = fields.pop("wait_for_broker", 0.0)
    quiet: bool = fields.pop("quiet_wait", False)
    spec: ChildSpec
    if fields.pop("kind", WorkerSpec.kind) == SchedulerSpec.kind:
        spec = SchedulerSpec(**fields)
    else:
        spec = WorkerSpec(**fields)
    configure_logging(spec.log_level, spec.log_format)
    report = _Report(socket.socket(fileno=report_fd)) if report_fd is not None else None
    return _serve(spec, None, report, wait, quiet)


def _serve(
    spec: ChildSpec, app: Conveyor | None, report: _Report | None, wait: float, quiet: bool
) -> int:
    """Run the child, and report to the supervisor how its start went."""
    started = threading.Event()

    def on_started() -> None:
        started.set()
        if report is not None:
            report.started()

    try:
        return _run_child(spec, app, on_started, wait, quiet)
    except Exception as exc:
        if started.is_set():
            raise  # a crash after a good start: the traceback, and a restart
        return _could_not_start(spec.kind, exc, wait, report)
    finally:
        if report is not None:
            report.close()


def _run_child(
    spec: ChildSpec,
    app: Conveyor | None,
    on_started: Callable[[], None],
    wait: float,
    quiet: bool,
) -> int:
    if app is None:
        from conveyor.cli import import_app

        app = import_app(spec.app, spec.modules)
    if spec.metrics:
        from conveyor.observability.metrics import PrometheusHook

        app.add_hook(PrometheusHook())
    connected = app

    async def connect() -> None:
        await connect_waiting(connected.connect, connected.settings.broker_url, wait, quiet=quiet)

    if isinstance(spec, SchedulerSpec):
        asyncio.run(_serve_scheduler(app, spec, connect, on_started))
        return 0
    from conveyor.worker.consumer import run_worker

    return run_worker(
        app,
        concurrency=spec.concurrency,
        queues=spec.queues,
        grace=spec.grace,
        max_tasks=spec.max_tasks,
        on_started=on_started,
        connect=connect,
    )


async def _serve_scheduler(
    app: Conveyor,
    spec: SchedulerSpec,
    connect: Callable[[], Awaitable[None]],
    on_started: Callable[[], None],
) -> None:
    from conveyor.scheduler import Scheduler

    await connect()  # the scheduler's start: it runs no startup handlers
    on_started()
    try:
        await Scheduler(app, skip_first_run=spec.skip_first_run).serve()
    finally:
        await app.close()


def _could_not_start(kind: str, exc: Exception, wait: float, report: _Report | None) -> int:
    """Say why a child could not start, in one line (a traceback of the user's frames for
    a plain exception): to the supervisor, which shows it, or in the log when there is
    none. Returns the exit code that tells the supervisor so."""
    import click

    from conveyor.cli import user_traceback

    if isinstance(exc, click.ClickException):  # the app could not be imported
        reason = exc.format_message()
    elif isinstance(exc, BrokerUnavailable):
        reason = unreachable_reason(exc, wait)
    elif isinstance(exc, ConveyorError):
        reason = str(exc)
    else:  # a startup handler's own error: where in the user's code
        reason = user_traceback(exc)
    if report is not None:
        report.could_not_start(reason)
    else:
        log.error("%s process could not start: %s", kind, reason)
    if isinstance(exc, BrokerUnavailable):
        return BROKER_UNAVAILABLE_EXIT_CODE
    return STARTUP_FAILED_EXIT_CODE


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
