"""Results, taskiq's way: ``TaskiqResult``, the ``AsyncTaskiqTask`` handle ``kiq()``
returns, and the result backends (``AsyncResultBackend``, taskiq-redis's
``RedisAsyncResultBackend``).

>>> handle = await add.kiq(1, 2)                                        # doctest: +SKIP
>>> (await handle.wait_result(timeout=5)).return_value                  # doctest: +SKIP
3

**``set_result()`` from a task** (taskiq's way of reporting progress) stores a
result beside the task's own: taskiq's readers (``wait_result()``, ``get_result()``,
``is_ready()``, ``gather()`` and the backend's ``get_result()``) see it until the task
ends, and the task's real result replaces it when it does. Conveyor's own readers
(``TaskHandle.result()``, ``status()``, ``handle.get()``) see only the real result, so
a reported value never passes for the task's outcome there.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from conveyor.brokers.base import ResultStore, StoredResult
from conveyor.clock import Seconds, seconds
from conveyor.compat.taskiq._options import _note_ignored
from conveyor.compat.taskiq.errors import (
    DuplicateExpireTimeSelectedError,
    ExpireTimeMustBeMoreThanZeroError,
    ResultGetError,
    ResultIsMissingError,
    TaskiqResultTimeoutError,
)
from conveyor.errors import ConfigurationError, TaskFailed
from conveyor.handle import TaskHandle, decode_result
from conveyor.message import convert, encode_value
from conveyor.result import ErrorInfo, Result, TaskStatus

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.compat.taskiq.brokers import AsyncBroker

__all__ = [
    "AsyncResultBackend",
    "AsyncTaskiqTask",
    "RedisAsyncResultBackend",
    "TaskProgress",
    "TaskState",
    "TaskiqResult",
]

log = logging.getLogger("conveyor.compat.taskiq")

R = TypeVar("R")
P = TypeVar("P")

# seconds per wait while waiting without a limit (taskiq's wait_result(timeout=-1))
_UNBOUNDED_WAIT_STEP = 3600.0
# where set_result() and set_progress() keep their values, beside the task's own result
_REPORTED = "/taskiq-result"
_PROGRESS = "/taskiq-progress"
_FIELDS = ("is_err", "log", "return_value", "execution_time", "labels", "error")


class TaskiqResult(Generic[R]):
    """taskiq's result: ``is_err``, ``return_value``, ``execution_time``, ``error``,
    ``log`` and ``labels``; ``dict(result)`` and ``model_dump()`` give those six fields.

    A result read from Conveyor also has Conveyor's ``task_id``, ``task``, ``status``,
    ``attempts`` and ``finished_at``. ``error`` is an :class:`~conveyor.ErrorInfo`
    (``type``, ``message``, ``traceback``) rather than the exception object; ``labels``
    is empty (Conveyor does not store labels with a result) and ``log`` is None.

    >>> TaskiqResult(is_err=False, return_value=3, execution_time=0.1).return_value
    3
    """

    def __init__(
        self,
        *,
        is_err: bool,
        return_value: R,
        execution_time: float,
        log: str | None = None,
        labels: Mapping[str, Any] | None = None,
        error: BaseException | ErrorInfo | None = None,
        task_id: str = "",
        task: str = "",
        status: TaskStatus | None = None,
        attempts: int = 0,
        finished_at: float = 0.0,
    ) -> None:
        self.is_err = is_err
        self.log = log
        self.return_value = return_value
        self.execution_time = float(execution_time)
        self.labels: dict[str, Any] = dict(labels or {})
        self.error = error
        self.task_id = task_id
        self.task = task
        self.status = status or (TaskStatus.FAILED if is_err else TaskStatus.SUCCEEDED)
        self.attempts = attempts
        self.finished_at = finished_at

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self)
        return f"TaskiqResult({fields})"

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        """``dict(result)``: taskiq's six fields."""
        for name in _FIELDS:
            yield name, getattr(self, name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskiqResult) and dict(self) == dict(other)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def model_validate(cls, data: Mapping[str, Any] | TaskiqResult[Any]) -> TaskiqResult[Any]:
        """A result from a dict of its fields (or a result), as pydantic's."""
        if isinstance(data, TaskiqResult):
            return data
        return cls(**{k: v for k, v in data.items() if k in _FIELDS})

    def model_dump(self, *, mode: str = "python", **_: Any) -> dict[str, Any]:
        """taskiq's fields as a dict; ``mode="json"`` gives JSON-ready values (bytes as
        UTF-8 text, dates as ISO strings, models as dicts). ``error`` is described as
        taskiq describes an exception: ``exc_type``, ``exc_message``, ``exc_module``."""
        dumped = dict(self)
        dumped["labels"] = dict(self.labels)
        dumped["error"] = _describe_error(self.error, json=mode == "json")
        if mode == "json":
            dumped["return_value"] = _jsonable(self.return_value)
            dumped["labels"] = _jsonable(dumped["labels"])
        return dumped

    def raise_for_error(self) -> TaskiqResult[R]:
        """Raise if the task failed: the exception itself when the result holds one (a
        result built with ``error=exc``), else :class:`~conveyor.TaskFailed` carrying the
        :class:`~conveyor.ErrorInfo` and the remote traceback. Returns the result."""
        if isinstance(self.error, BaseException):
            raise self.error
        if self.is_err:
            raise TaskFailed(self.task_id, self.error or ErrorInfo(self.status.value, ""))
        return self

    def unwrap(self) -> R:
        """The return value, or raise as :meth:`raise_for_error` does."""
        return self.raise_for_error().return_value


class TaskState(str, enum.Enum):  # noqa: UP042 (taskiq's: str() is "TaskState.STARTED")
    """taskiq's progress states (``taskiq.depends.progress_tracker.TaskState``)."""

    STARTED = "STARTED"
    FAILURE = "FAILURE"
    SUCCESS = "SUCCESS"
    RETRY = "RETRY"


@dataclass
class TaskProgress(Generic[P]):
    """A progress report: a ``state`` and any ``meta`` (``ProgressTracker`` writes it,
    ``await handle.get_progress()`` reads it)."""

    state: TaskState | str
    meta: P | None = None

    def model_dump(self, **_: Any) -> dict[str, Any]:
        """The fields as a dict."""
        state = self.state.value if isinstance(self.state, TaskState) else self.state
        return {"state": state, "meta": self.meta}


class _Reported(msgspec.Struct, frozen=True, omit_defaults=True):
    """What ``set_result()`` stores (taskiq's fields)."""

    is_err: bool
    return_value: Any = None
    execution_time: float = 0.0
    log: str | None = None
    labels: dict[str, Any] = {}
    error: ErrorInfo | None = None


class _Progress(msgspec.Struct, frozen=True):
    state: str
    meta: Any = None


_reported_decoder = msgspec.msgpack.Decoder(_Reported)
_progress_decoder = msgspec.msgpack.Decoder(_Progress)


class AsyncTaskiqTask(TaskHandle[R]):
    """What ``kiq()`` returns: a :class:`~conveyor.TaskHandle` with taskiq's methods and
    signatures (``wait_result(check_interval, timeout, with_logs)``, waiting without a
    limit unless given ``timeout``), which give :class:`TaskiqResult`. Conveyor's own
    methods (``get()``, ``result()``, ``status()``, ``abort()``) are there too and keep
    their meaning."""

    __slots__ = ()

    @property
    def return_type(self) -> Any:
        """The task's return annotation (results are converted to it)."""
        return self._return_type

    async def wait_result(  # type: ignore[override]  # taskiq's signature and result type
        self,
        check_interval: float = 0.2,
        timeout: Seconds = -1,
        with_logs: bool = False,
    ) -> TaskiqResult[R]:
        """The task's result, or what it reported with ``set_result()`` before it.

        ``timeout`` seconds (``-1``/``0``, taskiq's default: no limit) then
        ``TaskiqResultTimeoutError`` (a ``TimeoutError``). ``check_interval`` is accepted
        and ignored: results are pushed to waiters, not polled.
        """
        limit = seconds(timeout)
        custom = _custom_backends.get(self._app)
        if custom is not None:
            return await _poll_custom(custom, self.task_id, check_interval, limit, with_logs)
        store = self._app.result_store
        found = await _wait_for_result(
            store, self.task_id, limit if limit is not None and limit > 0 else None
        )
        if found is None:
            raise TaskiqResultTimeoutError(timeout=timeout)
        return _to_taskiq(found, self.task_id, self._return_type, with_logs)

    async def get_result(self, with_logs: bool = False) -> TaskiqResult[R]:
        """The stored result now (or what the task reported so far); raises
        ``ResultGetError`` if there is none yet."""
        custom = _custom_backends.get(self._app)
        if custom is not None:
            return await custom.get_result(self.task_id, with_logs=with_logs)
        found = await _stored(self._app.result_store, self.task_id)
        if found is None:
            raise ResultGetError(
                f"no result stored for task {self.task_id} (not finished, or expired)"
            )
        return _to_taskiq(found, self.task_id, self._return_type, with_logs)

    async def is_ready(self) -> bool:
        """True once the task's result (or a ``set_result()`` report) is stored."""
        custom = _custom_backends.get(self._app)
        if custom is not None:
            return bool(await custom.is_result_ready(self.task_id))
        return await _stored(self._app.result_store, self.task_id) is not None

    async def get_progress(self) -> TaskProgress[Any] | None:
        """The last ``ProgressTracker`` report, or None."""
        return await _read_progress(self._app.result_store, self.task_id)

    # Conveyor's methods keep Conveyor's meaning (the taskiq wait_result above differs)

    async def get(self, timeout: Seconds = 60.0) -> R:
        """The return value; raises :class:`~conveyor.TaskFailed` (Conveyor's ``get``)."""
        return (await TaskHandle.wait_result(self, timeout)).unwrap()

    def wait_result_sync(self, timeout: Seconds = 60.0) -> Result[R]:
        """Conveyor's :meth:`~conveyor.TaskHandle.wait_result_sync`."""
        connections = self._app._connections
        connections.refuse_blocking_on_own_loop("wait_result_sync()/get_sync()")
        return connections.portal().call(lambda: TaskHandle.wait_result(self, timeout))


def is_custom_backend(backend: AsyncResultBackend[Any]) -> bool:
    """``backend`` is an application's own subclass that stores results itself (it
    overrides ``set_result``/``get_result``): the worker hands it every final result, and
    handles read results through it, as taskiq does. Conveyor's own store keeps the
    task's status, abort and retries either way."""
    cls = type(backend)
    return any(
        getattr(cls, name) is not getattr(AsyncResultBackend, name)
        for name in ("set_result", "get_result", "is_result_ready")
    )


# the application-defined backend of each app whose broker has one (read by handles)
_custom_backends: weakref.WeakKeyDictionary[Conveyor, AsyncResultBackend[Any]] = (
    weakref.WeakKeyDictionary()
)


class AsyncResultBackend(Generic[R]):
    """Reads and writes results of the broker it is attached to. Every compat broker
    has one: Conveyor always stores results (taskiq's default backend stores none).

    ``set_result()`` stores a report beside the task's own result (see the module
    docstring); ``set_progress()``/``get_progress()`` keep ``ProgressTracker`` reports.
    """

    def __init__(self) -> None:
        self._broker: AsyncBroker | None = None

    def _attach(self, broker: AsyncBroker) -> None:
        if self._broker is not None and self._broker is not broker:
            raise ConfigurationError(
                f"{type(self).__name__} is already attached to {self._broker!r}; give each "
                "broker its own result backend"
            )
        self._broker = broker
        if is_custom_backend(self):
            _custom_backends[broker.conveyor] = self
        else:
            _custom_backends.pop(broker.conveyor, None)

    def _app(self) -> Conveyor:
        if self._broker is None:
            raise ConfigurationError(
                f"{type(self).__name__} is not attached to a broker: "
                "use broker.with_result_backend(backend)"
            )
        return self._broker.conveyor

    def _store(self) -> ResultStore:
        return self._app().result_store

    def _ttl(self) -> float:
        return self._app().settings.result_ttl or 3600.0

    def _missing(self, task_id: str) -> ResultGetError:
        return ResultGetError(f"no result stored for task {task_id} (not finished, or expired)")

    async def startup(self) -> None:
        """Nothing to do: the broker's ``startup()`` connects the result store."""

    async def shutdown(self) -> None:
        """Nothing to do: the broker's ``shutdown()`` closes the result store."""

    async def set_result(self, task_id: str, result: TaskiqResult[Any]) -> None:
        """Store ``result`` for ``task_id``, for taskiq's readers, until the task's own
        result replaces it (see the module docstring)."""
        error = result.error
        if isinstance(error, BaseException):
            error = ErrorInfo.from_exception(error)
        reported = _Reported(
            is_err=result.is_err,
            return_value=result.return_value,
            execution_time=result.execution_time,
            log=result.log,
            labels=dict(result.labels),
            error=error,
        )
        store = self._store()
        await store.put([StoredResult(task_id + _REPORTED, encode_value(reported), self._ttl())])

    async def is_result_ready(self, task_id: str) -> bool:
        """True once ``task_id`` has a result (or a ``set_result()`` report)."""
        return await _stored(self._store(), task_id) is not None

    async def get_result(self, task_id: str, with_logs: bool = False) -> TaskiqResult[R]:
        """The result of ``task_id`` (or what it reported so far); raises
        ``ResultGetError`` if there is none."""
        found = await _stored(self._store(), task_id)
        if found is None:
            raise self._missing(task_id)
        return _to_taskiq(found, task_id, Any, with_logs)

    async def set_progress(self, task_id: str, progress: TaskProgress[Any]) -> None:
        """Store a progress report for ``task_id`` (kept ``result_ttl``)."""
        state = progress.state.value if isinstance(progress.state, TaskState) else progress.state
        data = encode_value(_Progress(str(state), progress.meta))
        await self._store().set_progress(task_id + _PROGRESS, data, self._ttl())

    async def get_progress(self, task_id: str) -> TaskProgress[Any] | None:
        """The last progress report of ``task_id``, or None."""
        return await _read_progress(self._store(), task_id)


class RedisAsyncResultBackend(AsyncResultBackend[R]):
    """taskiq-redis's result backend: results are kept on ``redis_url`` for
    ``result_ex_time`` seconds (``result_px_time`` ms), else Conveyor's ``result_ttl``.

    When ``redis_url`` is the broker's server and database, the broker's own result store
    (and key prefix) is used. ``keep_results=False`` is ignored: results expire by TTL.
    ``get_result()`` raises ``ResultIsMissingError`` when there is no result.
    """

    def __init__(
        self,
        redis_url: str,
        keep_results: bool = True,
        result_ex_time: int | None = None,
        result_px_time: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        if (result_ex_time is not None and result_ex_time <= 0) or (
            result_px_time is not None and result_px_time <= 0
        ):
            raise ExpireTimeMustBeMoreThanZeroError()
        if result_ex_time is not None and result_px_time is not None:
            raise DuplicateExpireTimeSelectedError()
        self.redis_url = redis_url
        self.keep_results = keep_results
        self.result_ex_time = result_ex_time
        self.result_px_time = result_px_time
        self.result_ttl: float | None = (
            float(result_ex_time)
            if result_ex_time is not None
            else (result_px_time / 1000 if result_px_time is not None else None)
        )
        _note_ignored(type(self).__name__, options)

    def _missing(self, task_id: str) -> ResultGetError:
        return ResultIsMissingError(f"no result stored for task {task_id}")


# -- reading ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Found:
    """A stored value: the task's own result, or (``reported``) a set_result() report."""

    data: bytes
    reported: bool


async def _stored(store: ResultStore, task_id: str) -> _Found | None:
    """The task's result, else its set_result() report, else None."""
    raw = await store.get(task_id)
    if raw is not None:
        return _Found(raw, False)
    raw = await store.get(task_id + _REPORTED)
    return None if raw is None else _Found(raw, True)


async def _wait_for_result(store: ResultStore, task_id: str, limit: float | None) -> _Found | None:
    """Wait (push-based) for the task's result or a set_result() report, whichever is
    stored first; None after ``limit`` seconds (None: no limit)."""
    while True:
        step = _UNBOUNDED_WAIT_STEP if limit is None else limit
        own = asyncio.ensure_future(store.wait(task_id, step))
        reported = asyncio.ensure_future(store.wait(task_id + _REPORTED, step))
        try:
            done, _ = await asyncio.wait({own, reported}, return_when=asyncio.FIRST_COMPLETED)
            data = own.result() if own in done else None
            if data is not None:
                return _Found(data, False)
            if reported in done and reported.result() is not None:
                found = await _stored(store, task_id)  # its own result, if stored since, wins
                if found is not None:
                    return found
            await asyncio.wait({own, reported})  # the first one timed out: so does the other
            data, report = own.result(), reported.result()
            if data is not None:
                return _Found(data, False)
            if report is not None:
                return _Found(report, True)
        finally:
            for waiter in (own, reported):
                if not waiter.done():
                    waiter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiter
        if limit is not None:
            return None


async def _poll_custom(
    backend: AsyncResultBackend[Any],
    task_id: str,
    check_interval: float,
    limit: float | None,
    with_logs: bool,
) -> TaskiqResult[Any]:
    """taskiq's wait on an application's backend: ``is_result_ready()`` every
    ``check_interval`` seconds, then ``get_result()``."""
    deadline = None if limit is None or limit <= 0 else time.monotonic() + limit
    while not await backend.is_result_ready(task_id):
        if deadline is not None and time.monotonic() >= deadline:
            raise TaskiqResultTimeoutError(timeout=limit)
        # sleep: the backend is the application's own and has no way to push a result
        await asyncio.sleep(max(check_interval, 0.001))
    return await backend.get_result(task_id, with_logs=with_logs)


async def forget_reported(store: ResultStore, task_id: str) -> None:
    """Forget what an earlier task with this id reported (``set_result()``,
    ``set_progress()``): a reused task id starts afresh, as its result does."""
    await asyncio.gather(store.delete(task_id + _REPORTED), store.delete(task_id + _PROGRESS))


async def _read_progress(store: ResultStore, task_id: str) -> TaskProgress[Any] | None:
    raw = await store.get_progress(task_id + _PROGRESS)
    if raw is None:
        return None
    stored = _progress_decoder.decode(raw)
    state: TaskState | str = stored.state
    with contextlib.suppress(ValueError):
        state = TaskState(stored.state)
    return TaskProgress(state, stored.meta)


def _to_taskiq(found: _Found, task_id: str, return_type: Any, with_logs: bool) -> TaskiqResult[Any]:
    if found.reported:
        reported = _reported_decoder.decode(found.data)
        return TaskiqResult(
            is_err=reported.is_err,
            return_value=_coerce(reported.return_value, return_type),
            execution_time=reported.execution_time,
            log=reported.log if with_logs else None,
            labels=reported.labels,
            error=reported.error,
            task_id=task_id,
        )
    result = decode_result(found.data)
    value = result.return_value if result.is_err else _coerce(result.return_value, return_type)
    return TaskiqResult(
        is_err=result.is_err,
        return_value=value,
        execution_time=result.execution_time,
        error=result.error,
        task_id=result.task_id,
        task=result.task,
        status=result.status,
        attempts=result.attempts,
        finished_at=result.finished_at,
    )


def _coerce(value: Any, return_type: Any) -> Any:
    """``value`` as ``return_type``, as taskiq reads a result: converted when it can be
    (``bytes`` to ``str`` as UTF-8 text, numeric strings to numbers), else left as
    stored, with a warning."""
    if return_type is Any or return_type is inspect.Parameter.empty:
        return value
    try:
        return convert(value, return_type)
    except (msgspec.ValidationError, TypeError, NotImplementedError):
        pass
    if isinstance(value, bytes | bytearray):
        try:
            return convert(bytes(value).decode(), return_type)
        except (UnicodeDecodeError, msgspec.ValidationError, TypeError, NotImplementedError):
            pass
    try:
        return msgspec.convert(value, return_type, strict=False)
    except (msgspec.ValidationError, TypeError, NotImplementedError):
        log.warning("Cannot parse return type into %s", return_type)
        return value


# -- dumping ----------------------------------------------------------------------------


def _describe_error(error: BaseException | ErrorInfo | None, *, json: bool) -> Any:
    if error is None:
        return None
    if isinstance(error, ErrorInfo):
        module, _, name = error.type.rpartition(".")
        message: Any = (error.message,)
    else:
        module, name, message = type(error).__module__, type(error).__qualname__, error.args
    return {
        "exc_type": name,
        "exc_message": list(message) if json else tuple(message),
        "exc_module": module or "builtins",
        "exc_cause": None,
        "exc_context": None,
        "exc_suppress_context": False,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    try:
        return msgspec.to_builtins(value, enc_hook=_enc_hook)
    except TypeError:
        return str(value)


def _enc_hook(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    return str(obj)
