"""How a worker runs a plain ``def`` task.

- :class:`SyncRunner` (the default): in a thread pool the worker owns, sized to its
  concurrency so that every slot can run a sync task at once, with the caller's
  ``contextvars`` (the task context that log records carry) copied in. Threads share
  the GIL: CPU-bound tasks do not run in parallel there.
- :class:`ProcessRunner` (``@app.task(runner="process")``): in a pool of child
  processes the worker owns, ``process_pool_size`` of them (0: one per CPU), started
  when the first such task runs, with ``forkserver`` (``spawn`` where there is none).
  Arguments and results cross the process boundary through the wire codec (msgpack,
  the task's annotations converting them on each side, as for a message), never
  pickle; only an exception the task raises is pickled, so that ``retry_on`` still
  sees its class. A timeout, an abort or a shutdown past its grace kills the child
  that runs the task (SIGKILL: a CPU-bound loop cannot be interrupted otherwise), and
  the pool starts a new one when it next needs one.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import logging
import os
import pickle
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from conveyor.errors import ProcessDied, RemoteTraceback
from conveyor.message import encode_value

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import ForkServerContext, SpawnContext
    from multiprocessing.process import BaseProcess

    from conveyor.task import Task

__all__ = ["ProcessRunner", "SyncRunner"]

T = TypeVar("T")

log = logging.getLogger("conveyor.worker")

# replies from a pool process: [_OK, value] or [_RAISED, type, message, traceback, pickled]
_OK, _RAISED = 0, 1
# how often a pool process checks that the worker that started it is still there
_ORPHAN_CHECK = 1.0


class SyncRunner:
    """The worker's pool for sync tasks (threads named ``conveyor-task_N``)."""

    def __init__(self, size: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="conveyor-task")

    async def __call__(
        self, fn: Callable[..., T], args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> T:
        """Run ``fn(*args, **kwargs)`` in the pool, keeping contextvars."""
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def close(self) -> None:
        """Stop taking work; a thread still running a timed-out task finishes on its own."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class _PoolProcess:
    """One child of a :class:`ProcessRunner` and the worker's end of its pipe."""

    def __init__(self, process: BaseProcess, connection: Connection) -> None:
        self.process = process
        self.connection = connection

    def call(self, request: bytes) -> bytes:
        """Send one call and wait for its reply (blocking: run in a thread)."""
        self.connection.send_bytes(request)
        return self.connection.recv_bytes()

    def end(self) -> int | None:
        """Wait for the process to end (killing it if it has not within a few seconds),
        release it, and return its exit code (blocking: run in a thread)."""
        self.process.join(5.0)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()
        code = self.process.exitcode
        self.connection.close()
        self.process.close()
        return code


class ProcessRunner:
    """The worker's pool for ``runner="process"`` tasks: up to ``size`` child processes
    (0: ``os.cpu_count()``), each running one call at a time. Nothing is started until
    the first call, so a worker without such tasks pays nothing (not even the 10 ms of
    importing :mod:`multiprocessing`). ``preload`` names the modules of the process
    tasks: the forkserver imports them once, so each new child starts with them.

    A call waits for a free process when all ``size`` are busy; that wait counts toward
    the task's timeout, which covers the whole ``await``.

    >>> runner = ProcessRunner(4)                       # doctest: +SKIP
    >>> await runner(task, [3], {})                     # in a child process
    >>> await runner.aclose()
    """

    def __init__(self, size: int = 0, preload: Sequence[str] = ()) -> None:
        self.size = size or os.cpu_count() or 1
        self._preload = list(preload)
        self._context: ForkServerContext | SpawnContext | None = None
        self._idle: list[_PoolProcess] = []
        self._slots: asyncio.Semaphore | None = None
        self._waiters: ThreadPoolExecutor | None = None
        # the processes being killed or reaped, each with the owner that waits for it
        self._ending: set[asyncio.Task[None]] = set()
        self._closed = False

    async def __call__(self, task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Run ``task`` with ``args`` and ``kwargs`` in a pool process; its value, or the
        exception it raised. Cancelling the call kills the process."""
        request = _request(task, args, kwargs)
        if self._slots is None or self._waiters is None:
            self._slots = asyncio.Semaphore(self.size)
            self._waiters = ThreadPoolExecutor(self.size, thread_name_prefix="conveyor-process")
        async with self._slots:
            child = self._idle.pop() if self._idle else await self._started()
            waiting = self._waiters.submit(child.call, request)
            try:
                reply = await asyncio.wrap_future(waiting)
            except (EOFError, OSError):  # it died: a crash, a signal, the OOM killer
                pid = child.process.pid
                code = await asyncio.to_thread(child.end)
                raise ProcessDied(
                    f"task {task.name!r}: its process (pid {pid}) ended while "
                    f"running it, with exit code {code}"
                    + (f" (killed by signal {-code})" if code is not None and code < 0 else "")
                ) from None
            except BaseException:  # cancelled (a timeout, an abort, a shutdown): kill it
                self._kill(child, waiting)
                raise
            if self._closed:
                self._kill(child, None)
            else:
                self._idle.append(child)
        return _reply_value(reply)

    async def _started(self) -> _PoolProcess:
        """A new pool process; if the call is cancelled meanwhile, the process is killed
        once it has started."""
        starting = asyncio.get_running_loop().run_in_executor(None, self._start)
        try:
            return await asyncio.shield(starting)
        except asyncio.CancelledError:

            def kill(done: asyncio.Future[_PoolProcess]) -> None:
                if not done.cancelled() and done.exception() is None:
                    self._kill(done.result(), None)

            starting.add_done_callback(kill)
            raise

    def _start(self) -> _PoolProcess:
        """A new pool process (blocking: run in a thread)."""
        if self._context is None:
            import multiprocessing

            if "forkserver" in multiprocessing.get_all_start_methods():
                self._context = multiprocessing.get_context("forkserver")
                # "__main__" as multiprocessing's own default: the server runs the main
                # script once (as __mp_main__), so that each child does not run it again
                self._context.set_forkserver_preload(["__main__", __name__, *self._preload])
            else:
                self._context = multiprocessing.get_context("spawn")
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_serve_calls, args=(theirs,), name="conveyor-process-task"
        )
        process.start()
        theirs.close()
        log.debug("started process %d for runner='process' tasks", process.pid)
        return _PoolProcess(process, ours)

    def _kill(self, child: _PoolProcess, waiting: Future[bytes] | None) -> None:
        """SIGKILL ``child``; a task of this pool waits for it to end and releases it."""
        child.process.kill()

        async def end() -> None:
            if waiting is not None:  # its reader sees the pipe close; then the pipe goes
                await asyncio.gather(asyncio.wrap_future(waiting), return_exceptions=True)
            await asyncio.to_thread(child.end)

        ending = asyncio.create_task(end(), name=f"conveyor-end-process-{child.process.pid}")
        self._ending.add(ending)
        ending.add_done_callback(self._ending.discard)

    async def aclose(self) -> None:
        """Kill the idle processes and wait until every killed process has ended (a call
        still running is killed by its cancellation, which the worker's stop does)."""
        self._closed = True
        for child in self._idle:
            self._kill(child, None)
        self._idle.clear()
        while self._ending:
            await asyncio.gather(*self._ending, return_exceptions=True)
        if self._waiters is not None:
            self._waiters.shutdown(wait=False, cancel_futures=True)


def _request(task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any]) -> bytes:
    module, qualname = task.location
    try:
        return encode_value([module, qualname, args, kwargs])
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(
            f"task {task.name!r}: its arguments cannot be sent to its process through the "
            f"wire codec: {exc}"
        ) from None


def _reply_value(reply: bytes) -> Any:
    decoded = msgspec.msgpack.decode(reply)
    if decoded[0] == _OK:
        return decoded[1]
    _, kind, message, text, pickled = decoded
    error: BaseException | None = None
    if pickled is not None:
        try:
            error = pickle.loads(pickled)
        except Exception:
            error = None
    if not isinstance(error, BaseException):  # a class that cannot be rebuilt here
        error = RuntimeError(f"{kind}: {message}" if message else kind)
    error.__cause__ = RemoteTraceback(text)  # where it failed, in the pool process
    raise error


# -- in the pool process ----------------------------------------------------------------


def _serve_calls(connection: Connection) -> None:
    """A pool process: run calls until the worker closes its end of the pipe."""
    # Ctrl-C reaches the whole process group; the worker decides what becomes of tasks
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    threading.Thread(
        target=_exit_when_orphaned, args=(parent,), name="conveyor-orphan-check", daemon=True
    ).start()
    targets: dict[tuple[str, str], Callable[[list[Any], dict[str, Any]], Any]] = {}
    while True:
        try:
            request = connection.recv_bytes()
        except (EOFError, OSError):
            return
        module, qualname, args, kwargs = msgspec.msgpack.decode(request)
        try:
            target = targets.get((module, qualname))
            if target is None:
                target = targets[module, qualname] = _target(module, qualname)
            value = target(args, kwargs)
            try:
                reply = encode_value([_OK, value])
            except Exception as exc:
                raise TypeError(
                    f"result not serializable: {type(exc).__name__}: {exc}; "
                    "return what the wire codec carries (docs/wire-format.md)"
                ) from None
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: a failure
            reply = _raised(exc)
        try:
            connection.send_bytes(reply)
        except (EOFError, OSError):
            return


def _target(module: str, qualname: str) -> Callable[[list[Any], dict[str, Any]], Any]:
    """The task function at ``module:qualname``, converting its arguments by its
    annotations as the worker does."""
    from conveyor.task import SyncTask, Task, TaskOptions

    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    task = found if isinstance(found, Task) else SyncTask(None, found, TaskOptions(qualname))  # type: ignore[arg-type]

    def call(args: list[Any], kwargs: dict[str, Any]) -> Any:
        args, kwargs = task.convert_arguments(args, kwargs)
        return task.fn(*args, **kwargs)

    return call


def _raised(exc: BaseException) -> bytes:
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__}.{name}"
    try:
        message = str(exc)
    except Exception:
        message = ""
    text = "".join(traceback.format_exception(exc))
    try:
        pickled: bytes | None = pickle.dumps(exc)
    except Exception:
        pickled = None
    return encode_value([_RAISED, name, message, text, pickled])


def _exit_when_orphaned(parent: int) -> None:
    """Exit when the process that started this one is gone (the worker, or its
    forkserver, which ends with the worker): a task must not run on for nobody."""
    while True:
        time.sleep(_ORPHAN_CHECK)
        if os.getppid() != parent:
            os._exit(1)
