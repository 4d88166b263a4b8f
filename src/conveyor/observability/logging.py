"""Task-aware logging: every log record written inside a task carries its ``task_id``,
``task_name`` and ``attempt``, and a JSON formatter puts them in every line.

The worker sets a context variable when it starts a delivery; asyncio gives every task
its own copy, and ``def`` tasks see it too because the app runs them in its thread pool
with a copy of the caller's context (``worker/runners.py``). :func:`install_task_context`
wraps the log record factory so that every record, from any logger and to any handler,
gets the three attributes (``None`` outside a task). A worker installs it when it starts.

>>> log = logging.getLogger("app.emails")              # doctest: +SKIP
>>> @app.task
... async def send(to: str) -> None:
...     log.info("sending to %s", to)   # record.task_id, record.task_name, record.attempt

``conveyor worker --log-format json`` writes one JSON object per line::

    {"time": "2026-03-09T11:00:00.123Z", "level": "INFO", "logger": "app.emails",
     "message": "sending to a@b.c", "process": 4242, "task_id": "01J...",
     "task": "app.emails:send", "attempt": 1}

and ``--log-format text`` (the default) appends ``[task=app.emails:send id=01J...
attempt=1]`` to lines written inside a task.
"""

from __future__ import annotations

import logging
import sys
import threading
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import msgspec

__all__ = [
    "TASK_CONTEXT",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "current_task",
    "install_task_context",
]

TASK_CONTEXT: ContextVar[tuple[str, str, int] | None] = ContextVar("conveyor_task", default=None)
"""(task id, task name, attempt) of the delivery being run; set by the worker."""

_install_lock = threading.Lock()
_installed = False

# attributes every LogRecord has; anything else was passed with extra= and is kept in JSON
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "task_id",
    "task_name",
    "attempt",
}


def current_task() -> tuple[str, str, int] | None:
    """(task id, task name, attempt) of the task running in this context, or None."""
    return TASK_CONTEXT.get()


def install_task_context() -> None:
    """Make every LogRecord carry ``task_id``, ``task_name`` and ``attempt`` (None outside
    a task). Idempotent; wraps whatever record factory is installed at the time."""
    global _installed
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            current = TASK_CONTEXT.get()
            if current is None:
                record.task_id = record.task_name = record.attempt = None
            else:
                record.task_id, record.task_name, record.attempt = current
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


class TextFormatter(logging.Formatter):
    """The plain format, plus ``[task=... id=... attempt=N]`` on lines inside a task."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s [%(process)d] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        task_id = getattr(record, "task_id", None)
        if task_id is None or hasattr(record, "outcome"):  # a task's outcome line names it
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the tagged line
        name, attempt = getattr(record, "task_name", None), getattr(record, "attempt", None)
        tag = f" [task={name} id={task_id} attempt={attempt}]"
        return head + tag + sep + tail


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, process,
    the task fields inside a task, ``exception`` with the formatted traceback, and any
    ``extra=`` fields (values JSON cannot hold are written with ``str()``)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        task_id = getattr(record, "task_id", None)
        if task_id is not None:
            entry["task_id"] = task_id
            entry["task"] = getattr(record, "task_name", None)
            entry["attempt"] = getattr(record, "attempt", None)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        return msgspec.json.encode(entry, enc_hook=str).decode()


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Log to stderr at ``level`` in ``log_format`` (``text`` or ``json``), with the task
    fields installed; replaces the root logger's handlers (``conveyor`` commands call
    this in every process)."""
    if log_format not in {"text", "json"}:
        raise ValueError(f"log format must be 'text' or 'json', not {log_format!r}")
    install_task_context()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
