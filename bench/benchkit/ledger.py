"""Per-process task ledger: how the harness knows which tasks ran, once, and when.

Every benchmark task calls :func:`record` once when it finishes, with its integer id and
the time it started. The entry is appended to an in-memory buffer (a list append, so the
cost inside the measured hot path is ~100 ns) and a daemon thread writes the buffer to
``$BENCH_LEDGER_DIR/<pid>.ledger`` every few milliseconds with one ``os.write`` on an
``O_APPEND`` descriptor. The orchestrator tails these files to detect completion, then
checks that every id appears exactly once.

Forked children (Celery prefork, Huey processes, ...) get their own file: the ledger is
(re)initialised lazily whenever the pid changes, since threads do not survive ``fork``.

Timestamps are ``time.monotonic()``: CLOCK_MONOTONIC is system-wide on Linux, so times
taken in the enqueuing process, the workers and the orchestrator are comparable.
"""

from __future__ import annotations

import atexit
import os
import threading
import time

now = time.monotonic

_FLUSH_INTERVAL = 0.005


class _Ledger:
    def __init__(self, directory: str) -> None:
        self.pid = os.getpid()
        path = os.path.join(directory, f"{self.pid}.ledger")
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.buf: list[str] = []
        self.lock = threading.Lock()
        thread = threading.Thread(target=self._loop, name="bench-ledger", daemon=True)
        thread.start()
        atexit.register(self.flush)

    def _loop(self) -> None:
        while True:
            time.sleep(_FLUSH_INTERVAL)
            self.flush()

    def flush(self) -> None:
        buf = self.buf
        if not buf:
            return
        with self.lock:
            # Never swap the list: a writer may hold a reference to it. Take a prefix
            # and delete it; both are single C-level operations under the GIL, and
            # lines appended meanwhile stay for the next flush.
            n = len(buf)
            chunk = buf[:n]
            del buf[:n]
            os.write(self.fd, "".join(chunk).encode())


_ledger: _Ledger | None = None
_init_lock = threading.Lock()


def _get() -> _Ledger:
    global _ledger
    led = _ledger
    if led is not None and led.pid == os.getpid():
        return led
    with _init_lock:
        if _ledger is None or _ledger.pid != os.getpid():
            directory = os.environ.get("BENCH_LEDGER_DIR")
            if not directory:
                raise RuntimeError("BENCH_LEDGER_DIR is not set: run tasks via bench/run.py")
            _ledger = _Ledger(directory)
        return _ledger


def record(task_id: int, started: float) -> None:
    """Record that task ``task_id`` ran, having started at ``started`` (``now()``)."""
    _get().buf.append(f"{task_id} {started:.6f} {now():.6f}\n")
