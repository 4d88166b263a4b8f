"""``conveyor worker``: N worker processes, restarted when they crash, recycled after
``--max-tasks-per-child`` tasks, and restarted on code changes with ``--reload``.

Each child is ``python -m conveyor.worker.supervisor '<json spec>'``: a fresh interpreter
that imports the app by its ``module:attribute`` path, exactly as a user would.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

__all__ = ["Supervisor", "WorkerSpec"]

log = logging.getLogger("conveyor.supervisor")

# a child that exits with this code finished its max_tasks and asks to be replaced
RECYCLE_EXIT_CODE = 0


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


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    started: float


class Supervisor:
    """Keeps ``processes`` workers alive until SIGTERM/SIGINT."""

    def __init__(
        self,
        spec: WorkerSpec,
        processes: int = 1,
        *,
        reload: bool = False,
        reload_dirs: list[Path] | None = None,
        stop_timeout: float | None = None,
        restart_backoff_cap: float = 10.0,
    ) -> None:
        self.spec = spec
        self.processes = max(processes, 1)
        self.reload = reload
        self.reload_dirs = reload_dirs or [Path.cwd()]
        grace = spec.grace if spec.grace is not None else 30.0
        self.stop_timeout = stop_timeout if stop_timeout is not None else grace + 10.0
        self.restart_backoff_cap = restart_backoff_cap
        self._children: list[_Child] = []
        self._stopping = threading.Event()
        self._reload_requested = threading.Event()
        self._crashes = 0

    def run(self) -> int:
        """Run until told to stop; returns the exit code for the CLI."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        watcher = self._start_reload_watcher() if self.reload else None
        try:
            for _ in range(self.processes):
                self._children.append(self._spawn())
            while not self._stopping.is_set():
                if self._reload_requested.is_set():
                    self._reload_requested.clear()
                    log.info("code changed: restarting %d worker(s)", len(self._children))
                    self._stop_children()
                    self._children = [self._spawn() for _ in range(self.processes)]
                self._replace_exited()
                self._stopping.wait(0.2)
        finally:
            self._stop_children()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if watcher is not None:
                watcher.join(timeout=2)
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("received %s: stopping workers gracefully", signal.Signals(signum).name)
        self._stopping.set()

    def _spawn(self) -> _Child:
        payload = json.dumps(asdict(self.spec))
        process = subprocess.Popen([sys.executable, "-m", "conveyor.worker.supervisor", payload])
        log.info("started worker process %d", process.pid)
        return _Child(process, time.monotonic())

    def _replace_exited(self) -> None:
        for index, child in enumerate(self._children):
            code = child.process.poll()
            if code is None or self._stopping.is_set():
                continue
            if code == RECYCLE_EXIT_CODE:
                log.info("worker %d recycled after its max tasks", child.process.pid)
                self._crashes = 0
            else:
                self._crashes += 1
                pause = min(0.5 * 2 ** (self._crashes - 1), self.restart_backoff_cap)
                if time.monotonic() - child.started > 60:
                    self._crashes, pause = 1, 0.5
                log.error(
                    "worker %d exited with code %d; restarting in %.1fs",
                    child.process.pid,
                    code,
                    pause,
                )
                if self._stopping.wait(pause):
                    return
            self._children[index] = self._spawn()

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
                    "worker %d did not stop in %.0fs: killing it",
                    child.process.pid,
                    self.stop_timeout,
                )
                child.process.kill()
                child.process.wait()

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


def child_main(payload: str) -> int:
    """Entry point of one worker process."""
    from conveyor.cli import configure_logging, import_app
    from conveyor.worker.consumer import run_worker

    spec = WorkerSpec(**json.loads(payload))
    configure_logging(spec.log_level)
    app = import_app(spec.app, spec.modules)
    return run_worker(
        app,
        concurrency=spec.concurrency,
        queues=spec.queues,
        grace=spec.grace,
        max_tasks=spec.max_tasks,
    )


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
