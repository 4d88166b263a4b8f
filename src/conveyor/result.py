"""What a task produced: :class:`Result`, its :class:`ErrorInfo`, :class:`TaskStatus`, and
what an abort request did (:class:`AbortOutcome`)."""

from __future__ import annotations

import enum
import traceback
from typing import Any, Generic, TypeVar

import msgspec

from conveyor.errors import TaskFailed

__all__ = [
    "AbortOutcome",
    "ErrorInfo",
    "Result",
    "TaskState",
    "TaskStatus",
    "aborted_result",
    "safe_text",
]

R = TypeVar("R")


class TaskStatus(enum.StrEnum):
    """Where a task is in its life. The last six are terminal: ``expired`` and
    ``superseded`` tasks ended without running (docs/flow-control.md)."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    ABORTED = "aborted"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {
        TaskStatus.SUCCEEDED,
        TaskStatus.FAILED,
        TaskStatus.DEAD,
        TaskStatus.ABORTED,
        TaskStatus.EXPIRED,
        TaskStatus.SUPERSEDED,
    }
)


class AbortOutcome(enum.StrEnum):
    """What ``handle.abort()`` did.

    ``DEQUEUED``: the task was queued, delayed or waiting for a retry; it was removed and
    will never run, and its result (status ``aborted``) is stored. ``SIGNALLED``: it is
    running; its worker cancels it and stores the ``aborted`` result (a task that finishes
    first keeps its own outcome). ``FINISHED``: it had already ended (succeeded, failed,
    dead or aborted); nothing changed. ``UNKNOWN``: no such task (never enqueued, or its
    result expired).
    """

    DEQUEUED = "dequeued"
    SIGNALLED = "signalled"
    FINISHED = "finished"
    UNKNOWN = "unknown"


class ErrorInfo(msgspec.Struct, frozen=True):
    """The exception a task ended with, as text that crosses process boundaries."""

    type: str
    message: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        """Capture ``exc``'s qualified type, message and formatted traceback.

        Never raises: an exception whose ``__str__`` raises, or a message too long or not
        encodable, is described rather than propagated (it would otherwise escape the
        worker's error handling, G5)."""
        kind = type(exc)
        name = (
            kind.__qualname__
            if kind.__module__ == "builtins"
            else (f"{kind.__module__}.{kind.__qualname__}")
        )
        try:
            message = str(exc)
        except Exception as broken:
            message = f"<str() of the exception raised {type(broken).__name__}>"
        try:
            text = "".join(traceback.format_exception(exc))
        except Exception as broken:
            text = f"<the traceback could not be formatted: {type(broken).__name__}>"
        return cls(
            type=safe_text(name, 1000),
            message=safe_text(message, MAX_ERROR_MESSAGE),
            traceback=safe_text(text, MAX_TRACEBACK),
        )

    def __str__(self) -> str:
        """``ValueError: bad input``, as the exception itself would print in a traceback."""
        return f"{self.type}: {self.message}" if self.message else self.type


# how much of an error message and of a traceback a result keeps (the end of a long
# traceback, where the error is, is kept)
MAX_ERROR_MESSAGE = 10_000
MAX_TRACEBACK = 64_000


def safe_text(text: str, limit: int) -> str:
    """``text`` as something every store and log can take: at most ``limit`` characters,
    with what UTF-8 cannot encode (lone surrogates) escaped."""
    if len(text) > limit:
        text = "..." + text[-(limit - 3) :] if limit > 3 else text[:limit]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class Result(msgspec.Struct, Generic[R], frozen=True, omit_defaults=True):
    """The outcome of one task.

    ``status`` is terminal (succeeded, failed, dead or aborted). ``return_value`` is the
    task's return value converted to its annotated type; ``error`` is set when ``is_err``.
    ``attempts`` counts the started attempts, ``execution_time`` the seconds the last one ran.
    """

    task_id: str
    task: str
    status: TaskStatus
    return_value: R | None = None
    error: ErrorInfo | None = None
    execution_time: float = 0.0
    attempts: int = 0
    finished_at: float = 0.0

    @property
    def is_err(self) -> bool:
        """True when the task did not succeed."""
        return self.status is not TaskStatus.SUCCEEDED

    def unwrap(self) -> R:
        """The return value, or raise :class:`TaskFailed` carrying ``error``
        (``handle.get()`` is ``wait_result()`` then this)."""
        if self.is_err:
            raise TaskFailed(self.task_id, self.error or ErrorInfo(self.status.value, ""))
        return self.return_value  # type: ignore[return-value]

    def raise_for_error(self) -> Result[R]:
        """taskiq's spelling of :meth:`unwrap` that returns the result itself.

        >>> value = (await handle.wait_result()).raise_for_error().return_value  # doctest: +SKIP
        """
        self.unwrap()
        return self


def aborted_result(
    task_id: str,
    task: str,
    *,
    attempts: int,
    finished_at: float,
    running: bool,
    execution_time: float = 0.0,
) -> Result[Any]:
    """The result of a task ended by ``handle.abort()``: status ``aborted``, error type
    ``conveyor.Aborted`` (``get()`` raises :class:`TaskFailed` carrying it)."""
    detail = (
        f"aborted by request while attempt {attempts} was running"
        if running
        else "aborted by request while it waited to run"
    )
    return Result(
        task_id=task_id,
        task=task,
        status=TaskStatus.ABORTED,
        error=ErrorInfo("conveyor.Aborted", detail),
        execution_time=execution_time,
        attempts=attempts,
        finished_at=finished_at,
    )


class TaskState(msgspec.Struct, frozen=True, omit_defaults=True):
    """A snapshot of a task for ``TaskHandle.status()`` and the dashboard."""

    task_id: str
    status: TaskStatus
    attempts: int = 0
    progress: float | None = None
    progress_message: str | None = None
    result: Result[Any] | None = None
    waiting: str | None = None
    """Why a queued task waits, when a flow limit deferred it ("rate limited: 10/s",
    "concurrency limited: 3 running"); None otherwise."""
