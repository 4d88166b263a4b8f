"""``conveyor worker``: N worker processes, restarted when they crash, recycled after
``--max-tasks-per-child`` tasks, and restarted on code changes with ``--reload``; with
``--with-scheduler``, one scheduler process too, kept alive the same way.

Each child is ``python -m conveyor.worker.supervisor '<json spec>'``: a fresh interpreter
that imports the app by its ``module:attribute`` path, exactly as a user would. The spec's
``kind`` says what the child runs: ``"worker"`` (the default) or ``"scheduler"``.

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

A child that cannot start logs one line saying why (the error's own message; for a
plain exception, a traceback of the user's frames only) instead of a traceback through
the supervisor, asyncio and Conveyor.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.app import Conveyor

__all__ = [
    "BROKER_UNAVAILABLE_EXIT_CODE",
    "RECYCLE_EXIT_CODE",
    "STARTUP_FAILED_EXIT_CODE",
    "SchedulerSpec",
    "Supervisor",
    "WorkerSpec",
]

log = logging.getLogger("conveyor.supervisor")

# a child that exits with this code finished its max_tasks and asks to be replaced
RECYCLE_EXIT_CODE = 0
# a child that exits with one of these failed before it started (sysexits.h codes)
STARTUP_FAILED_EXIT_CODE = 78  # EX_CONFIG: import, configuration, startup handler
BROKER_UNAVAILABLE_EXIT_CODE = 69  # EX_UNAVAILABLE: broker or result store unreachable
_NOT_STARTED = frozenset({STARTUP_FAILED_EXIT_CODE, BROKER_UNAVAILABLE_EXIT_CODE})


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


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes]
    started: float
    parked: bool = False  # could not start; with --reload, left exited until a change


class Supervisor:
    """Keeps ``processes`` workers, and the ``scheduler`` process if one is given, alive
    until SIGTERM/SIGINT, or until a child that never ran could not start."""

    def __init__(
        self,
        spec: WorkerSpec,
        processes: int = 1,
        *,
        reload: bool = False,
        reload_dirs: list[Path] | None = None,
        stop_timeout: float | None = None,
        restart_backoff_cap: float = 10.0,
        scheduler: SchedulerSpec | None = None,
        child_env: Mapping[str, str] | None = None,
        on_child_exit: Callable[[int], None] | None = None,
    ) -> None:
        self.spec = spec
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
        self._children: list[_Child] = []
        self._stopping = threading.Event()
        self._reload_requested = threading.Event()
        # consecutive crashes per kind: a crash-looping scheduler does not slow down the
        # restart of a worker, nor the other way round
        self._crashes = {WorkerSpec.kind: 0, SchedulerSpec.kind: 0}
        # whether a child of that kind has run (exited other than "could not start"):
        # after that, a child that cannot start is a transient fault, retried like a crash
        self._has_run = {WorkerSpec.kind: False, SchedulerSpec.kind: False}
        self._exit_code = 0

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
                self._replace_exited()
                self._stopping.wait(0.2)
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

    def _spawn_all(self) -> list[_Child]:
        children = [self._spawn(self.spec) for _ in range(self.processes)]
        if self.scheduler is not None:
            children.append(self._spawn(self.scheduler))
        return children

    def _spawn(self, spec: ChildSpec) -> _Child:
        payload = json.dumps({"kind": spec.kind, **asdict(spec)})
        env = {**os.environ, **self.child_env} if self.child_env else None
        process = subprocess.Popen(
            [sys.executable, "-m", "conveyor.worker.supervisor", payload], env=env
        )
        log.info("started %s process %d", spec.kind, process.pid)
        return _Child(spec, process, time.monotonic())

    def _replace_exited(self) -> None:
        for index, child in enumerate(self._children):
            code = child.process.poll()
            if code is None or child.parked or self._stopping.is_set():
                continue
            kind = child.spec.kind
            self._exited(child)
            if code not in _NOT_STARTED:
                self._has_run[kind] = True
            elif not self._could_not_start(child, code):
                continue
            if code == RECYCLE_EXIT_CODE:
                why = "recycled after its max tasks" if kind == WorkerSpec.kind else "exited"
                log.info("%s %d %s", kind, child.process.pid, why)
                self._crashes[kind] = 0
            else:
                self._crashes[kind] += 1
                pause = min(0.5 * 2 ** (self._crashes[kind] - 1), self.restart_backoff_cap)
                if time.monotonic() - child.started > 60:
                    self._crashes[kind], pause = 1, 0.5
                log.error(
                    "%s %d exited with code %d; restarting in %.1fs",
                    kind,
                    child.process.pid,
                    code,
                    pause,
                )
                if self._stopping.wait(pause):
                    return
            self._children[index] = self._spawn(child.spec)

    def _could_not_start(self, child: _Child, code: int) -> bool:
        """Handle a child that exited before it started (it logged why); True when it is
        to be restarted like a crashed one."""
        kind, pid = child.spec.kind, child.process.pid
        if self.reload:
            log.error("%s %d could not start: waiting for a code change", kind, pid)
            child.parked = True
            return False
        if self._has_run[kind]:
            return True  # it ran before: the cause may pass (a broker restarting)
        log.error("%s %d could not start (exit code %d): stopping", kind, pid, code)
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
                    child.process.pid,
                    self.stop_timeout,
                )
                child.process.kill()
                child.process.wait()
            if not child.parked:  # a parked child was reported when it exited
                self._exited(child)

    def _exited(self, child: _Child) -> None:
        if self.on_child_exit is None:
            return
        try:
            self.on_child_exit(child.process.pid)
        except Exception:
            log.exception("on_child_exit failed for process %d", child.process.pid)

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


def _stop_with_parent() -> None:
    """Ask the kernel to SIGTERM this child when its supervisor dies (Linux), so a
    SIGKILLed supervisor leaves no orphan workers: they drain gracefully instead."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl: nothing to arm
        return
    if os.getppid() == 1:  # the supervisor died before the request was armed
        os.kill(os.getpid(), signal.SIGTERM)


def child_main(payload: str) -> int:
    """Entry point of one child process: a worker, or the scheduler. Returns its exit
    code; one that fails before it has started logs one line and returns
    :data:`STARTUP_FAILED_EXIT_CODE` or :data:`BROKER_UNAVAILABLE_EXIT_CODE`."""
    from conveyor.cli import configure_logging

    _stop_with_parent()

    fields: dict[str, Any] = json.loads(payload)
    spec: ChildSpec
    if fields.pop("kind", WorkerSpec.kind) == SchedulerSpec.kind:
        spec = SchedulerSpec(**fields)
    else:
        spec = WorkerSpec(**fields)
    configure_logging(spec.log_level, spec.log_format)
    started = threading.Event()
    try:
        return _run_child(spec, started.set)
    except Exception as exc:
        if started.is_set():
            raise  # a crash after a good start: the traceback, and a restart
        return _could_not_start(spec.kind, exc)


def _run_child(spec: ChildSpec, on_started: Callable[[], None]) -> int:
    from conveyor.cli import import_app

    app = import_app(spec.app, spec.modules)
    if spec.metrics:
        from conveyor.observability.metrics import PrometheusHook

        app.add_hook(PrometheusHook())
    if isinstance(spec, SchedulerSpec):
        asyncio.run(_serve_scheduler(app, spec, on_started))
        return 0
    from conveyor.worker.consumer import run_worker

    return run_worker(
        app,
        concurrency=spec.concurrency,
        queues=spec.queues,
        grace=spec.grace,
        max_tasks=spec.max_tasks,
        on_started=on_started,
    )


async def _serve_scheduler(
    app: Conveyor, spec: SchedulerSpec, on_started: Callable[[], None]
) -> None:
    from conveyor.scheduler import Scheduler

    await app.connect()  # the scheduler's start: it runs no startup handlers
    on_started()
    try:
        await Scheduler(app, skip_first_run=spec.skip_first_run).serve()
    finally:
        await app.close()


def _could_not_start(kind: str, exc: Exception) -> int:
    """Log why a child could not start, in one line (a traceback of the user's frames for
    a plain exception), and return the exit code that tells the supervisor so."""
    import click

    from conveyor.cli import user_traceback
    from conveyor.errors import BrokerUnavailable, ConveyorError

    if isinstance(exc, click.ClickException):  # the app could not be imported
        reason = exc.format_message()
    elif isinstance(exc, ConveyorError):
        reason = str(exc)
    else:  # a startup handler's own error: where in the user's code
        reason = user_traceback(exc)
    log.error("%s process could not start: %s", kind, reason)
    if isinstance(exc, BrokerUnavailable):
        return BROKER_UNAVAILABLE_EXIT_CODE
    return STARTUP_FAILED_EXIT_CODE


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
